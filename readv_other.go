//go:build unix && (!linux || race || msan || asan)

package websocket

import "syscall"

// readInto reads from the socket fd into front if it is not empty, and
// into buf otherwise. (On Linux, readv_linux.go fills both with one system
// call; elsewhere raw system calls are not always the way to the kernel,
// and under the race detector and the sanitizers syscall.Read is the call
// that tells them what the kernel wrote and which write it came from.)
func readInto(fd uintptr, front, buf []byte) (int, error) {
	if len(front) > 0 {
		buf = front
	}
	for {
		n, err := syscall.Read(int(fd), buf)
		if err != syscall.EINTR {
			return n, err
		}
	}
}
