//go:build !unix

package websocket

import (
	"errors"
	"syscall"
)

// peerGone reports whether a write failed because the peer has closed or
// reset the connection. Here it cannot tell: a failed write closes the
// connection at once.
func peerGone(error) bool { return false }

// canReadWhenReady says that readWhenReady does not work here: reads go
// through the small buffer instead.
const canReadWhenReady = false

func (b *readBuffer) readWhenReady() error { return errors.ErrUnsupported }
func (b *readBuffer) readNow() error       { return errors.ErrUnsupported }

func (b *readBuffer) readFrameEnd([]byte) (int, error) { return 0, errors.ErrUnsupported }

// nonblockingWriter is not needed here: without readWhenReady, frames are
// never held (see coalesce.go).
func nonblockingWriter(syscall.RawConn) func([]byte) (int, error) { return nil }
