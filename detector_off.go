//go:build !race && !msan && !asan

package websocket

// instrumented says that the race detector or a sanitizer watches memory
// (see detector_on.go).
const instrumented = false
