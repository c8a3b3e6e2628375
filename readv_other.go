//go:build unix && !linux

package websocket

import "syscall"

// readInto reads from the socket fd into front if it is not empty, and
// into buf otherwise. (On Linux, readv_linux.go fills both with one system
// call; elsewhere raw system calls are not always the way to the kernel.)
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
