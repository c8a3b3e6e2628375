//go:build !linux

package websocket

import (
	"errors"
	"syscall"
)

// canWriteNow says that stagingArea.writeNow works here: only on Linux,
// the one system whose copy into a socket slowInPlace knows about.
const canWriteNow = false

type stageSys struct{}

func (s *stagingArea) writeNow(syscall.RawConn, [][]byte) (int, error) {
	return 0, errors.ErrUnsupported
}
