package websocket

import (
	"os"
	"syscall"
	"unsafe"
)

// canWriteNow says that stagingArea.writeNow works here: not where the
// race detector or a sanitizer watches, which a raw writev would not tell
// what it read (see detector_on.go).
const canWriteNow = !instrumented

// stageSys is what a staging area needs to write without waiting: the
// iovecs, and the callback for RawConn.Write, made once so that a write
// allocates nothing.
type stageSys struct {
	iov     [stageChunks]syscall.Iovec
	n       int
	written int
	errno   syscall.Errno
	write   func(fd uintptr) bool
}

// writeNow writes bufs to raw's socket with one writev(2) that does not
// wait, and returns how many bytes the kernel took: fewer than all, or
// none, when the socket's send buffer is full.
func (s *stagingArea) writeNow(raw syscall.RawConn, bufs [][]byte) (int, error) {
	x := &s.sys
	if x.write == nil {
		x.write = func(fd uintptr) bool {
			for {
				r, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&x.iov[0])), uintptr(x.n))
				if e != syscall.EINTR {
					x.written, x.errno = int(r), e
					return true // done either way: never wait for the socket
				}
			}
		}
	}
	x.n = 0
	for _, b := range bufs {
		if len(b) > 0 {
			x.iov[x.n].Base = &b[0]
			x.iov[x.n].SetLen(len(b))
			x.n++
		}
	}
	err := raw.Write(x.write)
	clear(x.iov[:x.n])
	switch {
	case err != nil:
		return 0, err
	case x.errno == syscall.EAGAIN:
		return 0, nil
	case x.errno != 0:
		return 0, os.NewSyscallError("writev", x.errno)
	}
	return x.written, nil
}
