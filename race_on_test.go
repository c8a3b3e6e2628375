//go:build race

package websocket

// raceEnabled reports whether the tests run under the race detector, whose
// runtime allows at most 8128 goroutines at once and makes everything
// several times slower.
const raceEnabled = true
