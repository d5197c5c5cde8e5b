// Command hvmon signs and verifies hvmon attestation reports.
//
// Run "hvmon --help" for the commands and "hvmon verify --help" for the exit
// codes.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
