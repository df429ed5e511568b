//go:build race

package metric

// raceEnabled: the race detector adds allocations of its own.
const raceEnabled = true
