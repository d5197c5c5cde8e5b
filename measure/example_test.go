package measure_test

import (
	"bytes"
	"context"
	"fmt"

	"hvmon.dev/hvmon/measure"
)

func ExampleMeasure() {
	region := bytes.Repeat([]byte("weights!"), 3*measure.PageSize/8) // 3 pages
	tree, err := measure.Measure(context.Background(), measure.Memory(region), nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(tree.Root() == measure.Bytes(region), len(tree.Leaves()))
	// Output: true 3
}

func ExampleRoot() {
	file := bytes.NewReader(make([]byte, 10000)) // an *os.File in practice
	src, err := measure.Section(file, 0, 10000)
	if err != nil {
		panic(err)
	}
	root, err := measure.Root(context.Background(), src, nil)
	fmt.Println(root == measure.Bytes(make([]byte, 10000)), err)
	// Output: true <nil>
}

func ExampleTree_Update() {
	region := make([]byte, 8*measure.PageSize)
	tree, _ := measure.Measure(context.Background(), measure.Memory(region), nil)
	region[5*measure.PageSize+9] = 1 // the writer knows it wrote page 5
	changed, _ := tree.Update(context.Background(), measure.Memory(region), []measure.PageRange{{First: 4, Last: 5}}, nil)
	fmt.Println(changed, tree.Root() == measure.Bytes(region))
	// Output: [page 5] true
}

func ExampleDiff() {
	before, _ := measure.Measure(context.Background(), measure.Memory(make([]byte, 2048*measure.PageSize)), nil)
	region := make([]byte, 2048*measure.PageSize)
	for p := 1024; p <= 1031; p++ {
		region[p*measure.PageSize] = 0xff
	}
	after, _ := measure.Measure(context.Background(), measure.Memory(region), nil)
	for _, r := range measure.Diff(before.Leaves(), after.Leaves()) {
		fmt.Println(r, "changed")
	}
	// Output: pages 1024–1031 changed
}

func ExampleTracker() {
	tr := measure.NewTracker(measure.Memory(make([]byte, 5000)), nil)
	for range 2 {
		res, _ := tr.Measure(context.Background())
		fmt.Println(res.Root, res.Mode)
	}
	// Output:
	// c0cb653260973695e043fead362574e9707f4595c1f5c67597e02791ce1c9a07 full
	// c0cb653260973695e043fead362574e9707f4595c1f5c67597e02791ce1c9a07 full-fallback: the source does not track writes
}
