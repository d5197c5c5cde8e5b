//go:build race

package measure

// raceEnabled: the race detector slows the hashing loop about tenfold.
const raceEnabled = true
