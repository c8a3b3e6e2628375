package websocket

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// NewNetConn returns the message stream of c as a [net.Conn], for protocols
// layered on WebSocket that expect a byte stream: a TLS or SSH tunnel, an RPC
// codec, a line protocol read with [bufio]. Every message on the connection
// must be of type typ.
//
// Write sends its argument as one message of type typ; like [Conn.Write] it
// is safe to call from concurrent goroutines. Read reads across message
// boundaries: when one message is used up it goes on into the next, so the
// peer may split the stream into messages as it likes. A message of the
// other type fails the connection with [StatusUnsupportedData] (1003). When
// the peer closes the connection with [StatusNormalClosure],
// [StatusGoingAway] or no status at all (a browser's close() with no
// code), Read returns [io.EOF]; any other closure returns an
// error for which [CloseStatus] tells the status.
//
// Deadlines are c's: SetReadDeadline and SetWriteDeadline call
// [Conn.SetReadDeadline] and [Conn.SetWriteDeadline]. An operation that
// misses its deadline returns an error that wraps
// [os.ErrDeadlineExceeded] and whose Timeout method reports true; the
// connection stays usable unless a write was cut short mid-frame. Close
// performs the closing handshake with [StatusNormalClosure], as
// [Conn.Close] does.
//
// The returned net.Conn owns the reading side of c: nothing else may read
// from c while it is in use.
func NewNetConn(c *Conn, typ MessageType) net.Conn {
	return &netConn{c: c, typ: typ}
}

// netConn is the net.Conn that [NewNetConn] returns.
type netConn struct {
	c   *Conn
	typ MessageType

	// readMu serializes Read calls: net.Conn allows them from several
	// goroutines, and r is the state they share.
	readMu  sync.Mutex
	r       io.Reader // the message being read; nil between messages
	readErr error     // set when a message of the wrong type ended the stream
}

// Read reads from the current message and, once it is used up, from the
// next. It returns with what one message holds rather than waiting for p to
// fill, as a TCP connection returns what one segment holds.
func (nc *netConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	nc.readMu.Lock()
	defer nc.readMu.Unlock()
	if nc.readErr != nil {
		return 0, nc.readErr
	}
	for {
		if nc.r == nil {
			typ, r, err := nc.c.Reader(context.Background())
			if err != nil {
				return 0, netConnReadError(err)
			}
			if typ != nc.typ {
				nc.readErr = &connError{code: StatusUnsupportedData,
					msg: fmt.Sprintf("received a %v message on a stream of %v messages", typ, nc.typ)}
				_ = nc.c.Close(StatusUnsupportedData, fmt.Sprintf("expected %v messages only", nc.typ))
				return 0, nc.readErr
			}
			nc.r = r
		}
		n, err := nc.r.Read(p)
		if err == io.EOF {
			// The message ended; an empty one is skipped, so that
			// EOF means the end of the stream only.
			nc.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		if err != nil {
			// A timeout leaves the message reader where it was, and
			// the next Read resumes it.
			return n, netConnReadError(err)
		}
		return n, nil
	}
}

// netConnReadError is err as a stream reader sees it: a clean closure by
// the peer is the end of the stream.
func netConnReadError(err error) error {
	switch CloseStatus(err) {
	case StatusNormalClosure, StatusGoingAway, StatusNoStatusRcvd:
		return io.EOF
	}
	return err
}

// Write sends p as one message.
func (nc *netConn) Write(p []byte) (int, error) {
	if err := nc.c.Write(context.Background(), nc.typ, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close performs the closing handshake with [StatusNormalClosure].
func (nc *netConn) Close() error { return nc.c.Close(StatusNormalClosure, "") }

func (nc *netConn) LocalAddr() net.Addr  { return nc.c.LocalAddr() }
func (nc *netConn) RemoteAddr() net.Addr { return nc.c.RemoteAddr() }

func (nc *netConn) SetDeadline(t time.Time) error {
	rerr := nc.c.SetReadDeadline(t)
	werr := nc.c.SetWriteDeadline(t)
	if rerr != nil {
		return rerr
	}
	return werr
}

func (nc *netConn) SetReadDeadline(t time.Time) error  { return nc.c.SetReadDeadline(t) }
func (nc *netConn) SetWriteDeadline(t time.Time) error { return nc.c.SetWriteDeadline(t) }
