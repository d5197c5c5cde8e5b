// Command hvmon signs and verifies hvmon attestation reports.
//
// Run "hvmon --help" for the commands and "hvmon verify --help" for the exit
// codes.
package main

import "os"

func main() {
	os.Exit(run(hookArgs(os.Args), os.Stdin, os.Stdout, os.Stderr))
}
