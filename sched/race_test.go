//go:build race

package sched

// raceEnabled scales down the statistical tests, which the race detector slows a hundredfold.
const raceEnabled = true
