package proc_test

import (
	"fmt"

	"hvmon.dev/hvmon/measure/proc"
)

func ExampleParseSelector() {
	sel, err := proc.ParseSelector("pid:4242:/models/llama:7b.bin")
	fmt.Printf("%d %q %v\n", sel.PID, sel.Pattern, err)
	_, err = proc.ParseSelector("pid:04242:x")
	fmt.Println(err)
	// Output:
	// 4242 "/models/llama:7b.bin" <nil>
	// process region "pid:04242:x": PID is not a positive decimal number
}

func ExampleParseMapsLine() {
	m, _ := proc.ParseMapsLine("7f2c8a000000-7f2c8a400000 r--p 00000000 fe:00 247026     /models/w.bin")
	fmt.Printf("%#x %d %s %s\n", m.Start, m.Size(), m.Perms, m.Path)
	// Output: 0x7f2c8a000000 4194304 r--p /models/w.bin
}

func ExampleResolve() {
	maps, _ := proc.ParseMaps([]byte(`55d0c2e00000-55d0c2e02000 r--p 00000000 08:01 77 /models/w.bin
55d0c2e02000-55d0c2e05000 rw-p 00002000 08:01 77 /models/w.bin
55d0c2e05000-55d0c2e06000 rw-p 00000000 00:00 0 
`))
	run, _ := proc.Resolve(maps, proc.Selector{PID: 1, Pattern: "w.bin"})
	fmt.Printf("%d mappings, %#x-%#x\n", len(run), run[0].Start, run[len(run)-1].End)
	// Output: 2 mappings, 0x55d0c2e00000-0x55d0c2e05000
}
