package websocket

import (
	"syscall"
	"unsafe"
)

// readInto reads from the socket fd into front and then, once front is
// full, into buf, with one system call, and returns how many bytes it read
// in all. With front the rest of a frame's payload, which the caller wants
// in a slice of its own, buf takes what follows, the next frame's header at
// least, which would otherwise cost a read of its own: on a busy connection
// each large frame is then read with one system call instead of two.
//
// Where the race detector or a sanitizer watches, front alone is read, with
// syscall.Read: a raw readv would not tell them what the kernel wrote, nor
// which write it came from (see detector_on.go).
func readInto(fd uintptr, front, buf []byte) (int, error) {
	for {
		var n int
		var err error
		switch {
		case len(front) == 0:
			n, err = syscall.Read(int(fd), buf)
		case instrumented:
			n, err = syscall.Read(int(fd), front)
		default:
			n, err = readv(fd, front, buf)
		}
		if err != syscall.EINTR {
			return n, err
		}
	}
}

func readv(fd uintptr, a, b []byte) (int, error) {
	var iov [2]syscall.Iovec
	iov[0].Base = &a[0]
	iov[0].SetLen(len(a))
	iov[1].Base = &b[0]
	iov[1].SetLen(len(b))
	n, _, errno := syscall.Syscall(syscall.SYS_READV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}
