package demo_test

import (
	"fmt"
	"strings"

	"hvmon.dev/hvmon/internal/demo"
)

// The demo log's key comes from a fixed public seed, so its verifier key
// (origin and key hash shown here) is the same on every machine.
func ExampleLogKey() {
	k, err := demo.LogKey()
	if err != nil {
		panic(err)
	}
	f := strings.SplitN(k.VerifierKey(), "+", 3)
	fmt.Println(f[0], f[1])
	// Output: demo.hvmon.dev/log 201d65d3
}
