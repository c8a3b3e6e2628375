//go:build race || msan || asan

package websocket

// instrumented says that the race detector or a sanitizer watches memory.
// They learn what a system call read or wrote, and that a write to a socket
// happens before the read of it, only from the syscall package's Read and
// Write. So where they watch, writes go through Write (see writeVector) and
// reads through Read (readInto), or a correct program that hands
// memory over with a message is reported as racing.
const instrumented = true
