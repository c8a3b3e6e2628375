//go:build !unix

package websocket

import "errors"

// canReadWhenReady says that readWhenReady does not work here: reads go
// through the small buffer instead.
const canReadWhenReady = false

func (b *readBuffer) readWhenReady() error { return errors.ErrUnsupported }
