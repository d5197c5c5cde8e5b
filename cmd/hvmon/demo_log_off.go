//go:build nologd

package main

import "hvmon.dev/hvmon/internal/demo"

// demoLogStarter is nil in builds without the log server: the demo runs
// without a log and says so.
func (a *app) demoLogStarter() demo.LogStarter { return nil }
