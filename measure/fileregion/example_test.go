package fileregion_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"hvmon.dev/hvmon/measure"
	"hvmon.dev/hvmon/measure/fileregion"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "fileregion")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	data := bytes.Repeat([]byte("weights!"), 2*measure.PageSize/8) // 2 pages
	path := filepath.Join(dir, "weights.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		panic(err)
	}

	r, err := fileregion.Open(path, measure.PageSize, 0) // the second page, to the end
	if err != nil {
		panic(err)
	}
	defer r.Close()
	root, err := measure.Root(context.Background(), r, nil)
	fmt.Println(root == measure.Bytes(data[measure.PageSize:]), r.Size(), err)

	// A range past the end of the file is an error, not a shorter region.
	var re *fileregion.RangeError
	_, err = fileregion.Open(path, 0, 3*measure.PageSize)
	fmt.Println(errors.As(err, &re), re.FileSize)
	// Output:
	// true 4096 <nil>
	// true 8192
}
