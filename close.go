package websocket

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
	"unicode/utf8"
)

// StatusCode is a close status code (RFC 6455 §7.4, and the IANA registry).
type StatusCode int

// The registered close status codes. [StatusNoStatusRcvd],
// [StatusAbnormalClosure] and [StatusTLSHandshake] describe a closure locally
// and are never sent in a Close frame. Applications may use 4000–4999;
// 3000–3999 are for libraries and frameworks registered with IANA.
const (
	StatusNormalClosure           StatusCode = 1000
	StatusGoingAway               StatusCode = 1001
	StatusProtocolError           StatusCode = 1002
	StatusUnsupportedData         StatusCode = 1003
	StatusNoStatusRcvd            StatusCode = 1005
	StatusAbnormalClosure         StatusCode = 1006
	StatusInvalidFramePayloadData StatusCode = 1007
	StatusPolicyViolation         StatusCode = 1008
	StatusMessageTooBig           StatusCode = 1009
	StatusMandatoryExtension      StatusCode = 1010
	StatusInternalError           StatusCode = 1011
	StatusServiceRestart          StatusCode = 1012
	StatusTryAgainLater           StatusCode = 1013
	StatusBadGateway              StatusCode = 1014
	StatusTLSHandshake            StatusCode = 1015
)

var statusNames = map[StatusCode]string{
	StatusNormalClosure:           "normal closure",
	StatusGoingAway:               "going away",
	StatusProtocolError:           "protocol error",
	StatusUnsupportedData:         "unsupported data",
	StatusNoStatusRcvd:            "no status received",
	StatusAbnormalClosure:         "abnormal closure",
	StatusInvalidFramePayloadData: "invalid frame payload data",
	StatusPolicyViolation:         "policy violation",
	StatusMessageTooBig:           "message too big",
	StatusMandatoryExtension:      "mandatory extension",
	StatusInternalError:           "internal error",
	StatusServiceRestart:          "service restart",
	StatusTryAgainLater:           "try again later",
	StatusBadGateway:              "bad gateway",
	StatusTLSHandshake:            "TLS handshake failure",
}

func (c StatusCode) String() string {
	if name, ok := statusNames[c]; ok {
		return strconv.Itoa(int(c)) + " (" + name + ")"
	}
	return strconv.Itoa(int(c))
}

// valid reports whether c may appear in a Close frame on the wire: the
// codes RFC 6455 and the IANA registry define for sending (1000–1003,
// 1007–1014) and the ranges left to libraries and applications (3000–4999).
// A received frame with any other code fails the connection with 1002.
func (c StatusCode) valid() bool {
	switch {
	case c >= 1000 && c <= 1003, c >= 1007 && c <= 1014:
		return true
	case c >= 3000 && c <= 4999:
		return true
	}
	return false
}

// maxCloseReason is the longest reason a Close frame can carry: 125 bytes of
// control payload less the two-byte code.
const maxCloseReason = maxControlPayload - 2

// CloseError is the Close frame the peer sent: reading from a connection the
// peer closed returns one. Use [CloseStatus] to get the code from any error.
type CloseError struct {
	Code   StatusCode
	Reason string
}

func (e CloseError) Error() string {
	if e.Reason == "" {
		return "websocket: peer closed the connection: status " + e.Code.String()
	}
	return fmt.Sprintf("websocket: peer closed the connection: status %v: %q", e.Code, e.Reason)
}

// connError is how a connection ended when it did not end with the peer's
// Close frame: we failed it for a protocol violation or a broken limit (code
// is the status we sent), or it broke (code is StatusAbnormalClosure).
type connError struct {
	code  StatusCode
	msg   string
	cause error
}

func (e *connError) Error() string {
	s := "websocket: " + e.msg
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	if e.code != StatusAbnormalClosure {
		s += " (closed with status " + e.code.String() + ")"
	}
	return s
}

func (e *connError) Unwrap() error { return e.cause }

// CloseStatus returns the close status code behind err: the code of the
// peer's Close frame, the code we closed with after a protocol violation or
// a broken limit, or [StatusAbnormalClosure] when the connection broke
// without a Close frame. It returns -1 when err says nothing about closure
// (nil, a context error, a handshake error).
func CloseStatus(err error) StatusCode {
	var ce CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	var pce *CloseError
	if errors.As(err, &pce) && pce != nil {
		return pce.Code
	}
	var fe *connError
	if errors.As(err, &fe) {
		return fe.code
	}
	return -1
}

// parseClosePayload decodes the payload of a received Close frame (§5.5.1).
// On a malformed payload it returns the status to fail the connection with.
func parseClosePayload(p []byte) (CloseError, StatusCode, error) {
	switch {
	case len(p) == 0:
		return CloseError{Code: StatusNoStatusRcvd}, 0, nil
	case len(p) == 1:
		return CloseError{}, StatusProtocolError, errors.New("close frame payload is one byte, too short for a status code")
	}
	code := StatusCode(binary.BigEndian.Uint16(p))
	if !code.valid() {
		return CloseError{}, StatusProtocolError, fmt.Errorf("close frame has status code %d, which may not be sent", int(code))
	}
	reason := p[2:]
	if !utf8.Valid(reason) {
		return CloseError{}, StatusInvalidFramePayloadData, errors.New("close frame reason is not valid UTF-8")
	}
	return CloseError{Code: code, Reason: string(reason)}, 0, nil
}

// appendClosePayload appends the payload of a Close frame with code and
// reason. StatusNoStatusRcvd stands for an empty payload.
func appendClosePayload(dst []byte, code StatusCode, reason string) []byte {
	if code == StatusNoStatusRcvd {
		return dst
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}

// checkCloseArgs reports whether code and reason may be sent by Close.
func checkCloseArgs(code StatusCode, reason string) error {
	if !code.valid() {
		return fmt.Errorf("websocket: status %v cannot be sent in a close frame", code)
	}
	if len(reason) > maxCloseReason {
		return fmt.Errorf("websocket: close reason is %d bytes; at most %d fit in a close frame", len(reason), maxCloseReason)
	}
	if !utf8.ValidString(reason) {
		return errors.New("websocket: close reason is not valid UTF-8")
	}
	return nil
}

// How long the close handshake may take before the connection is torn down
// anyway: waiting for the peer's Close frame, and, on a client, for the
// server to close the TCP connection after it (§7.1.1).
const (
	closeHandshakeTimeout = 5 * time.Second
	closeLingerTimeout    = time.Second
)

// Close performs the closing handshake (RFC 6455 §7): it sends a Close frame
// with code and reason, waits up to five seconds for the peer's Close frame,
// and closes the TCP connection (a client gives the server a moment to
// close it first, as §7.1.1 asks). Messages that writers completed before
// Close was called are delivered before the Close frame.
//
// Close reads on behalf of the application while no goroutine is reading.
// A data message that arrives is left for a moment for the application's
// read loop, if it is between two reads, to take; if nobody takes it, Close
// discards it and every message after it until the peer's Close frame. It
// returns nil when the handshake completed (or the peer sent its Close
// frame and closed the connection before ours could reach it), and an
// error saying what went wrong otherwise (for a peer that went away
// without answering, one whose [CloseStatus] is [StatusAbnormalClosure]);
// the connection is closed either way.
//
// Calling Close again while a Close is under way waits for that one to
// finish, without cutting its handshake short, and returns an error
// wrapping [net.ErrClosed], as does Close on a closed connection.
//
// The reason must be valid UTF-8 of at most 123 bytes, and the code one that
// may be sent: 1000–1003, 1007–1014 or 3000–4999.
func (c *Conn) Close(code StatusCode, reason string) error {
	if err := checkCloseArgs(code, reason); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeHandshakeTimeout)
	defer cancel()
	if !c.closing.CompareAndSwap(false, true) {
		select {
		case <-c.closed:
		case <-ctx.Done():
			c.teardown()
		}
		return errCloseAgain
	}
	if err := c.writeClose(ctx, code, reason); err != nil && !c.onlyReadsLeft() {
		c.teardown()
		return err
	}
	// Our Close frame is sent, or cannot be because the peer has closed
	// the connection; then what it sent before is read all the same, up
	// to its own Close frame if it sent one.
	err := c.awaitPeerClose(ctx)
	if err == nil && !c.server {
		// Whichever goroutine read the server's answer lingers for the
		// server to close the connection first (§7.1.1): let it.
		select {
		case <-c.closed:
		case <-ctx.Done():
		}
	}
	c.teardown()
	return err
}

var errCloseAgain = fmt.Errorf("websocket: Close called on a connection already closed or closing: %w", net.ErrClosed)

// CloseNow closes the TCP connection without a closing handshake. Blocked
// reads and writes return at once. It is safe to call more than once and
// from any goroutine, so `defer c.CloseNow()` is a good habit beside an
// explicit Close.
func (c *Conn) CloseNow() error {
	c.teardown()
	return nil
}

// writeClose sends our Close frame, once.
func (c *Conn) writeClose(ctx context.Context, code StatusCode, reason string) error {
	var buf [maxControlPayload]byte
	return c.writeControl(ctx, OpClose, appendClosePayload(buf[:0], code, reason))
}

// handOverWait is how long Close, reading in the application's stead,
// leaves a data message for the application's read loop to take before it
// concludes that nobody reads and discards it.
const handOverWait = 100 * time.Millisecond

// awaitPeerClose waits, until ctx is done, for the peer's Close frame after
// ours was sent. Whenever no goroutine is reading it reads itself, up to
// the next data message, which it holds for the application (see Close).
// A message the application does not take, or stops reading, for
// handOverWait is discarded with everything after it.
func (c *Conn) awaitPeerClose(ctx context.Context) error {
	var (
		handOver *time.Timer
		waiting  bool         // a message waited for the application
		seen     readProgress // where it was then
	)
	for {
		select {
		case c.readLock <- struct{}{}:
		case <-c.closeReceived:
			return c.closeResult(ctx)
		case <-c.closed:
			return c.closeResult(ctx)
		case <-ctx.Done():
			return c.closeResult(ctx)
		}
		if c.rd.inMessage && waiting && c.rd.progress() == seen {
			// Nobody took the message or read on: nobody reads. The
			// rest is dropped, as the application is done with it.
			c.rd.held = false
			c.readToClose(ctx)
			c.readLock.unlock()
			return c.closeResult(ctx)
		}
		if !c.rd.inMessage {
			c.readDeadline.begin(ctx)
			_, err := c.nextMessage(ctx)
			c.readDeadline.end()
			if err != nil {
				c.readLock.unlock()
				return c.closeResult(ctx)
			}
			c.rd.held = true
		}
		waiting, seen = true, c.rd.progress()
		c.readLock.unlock()
		if a := c.await.Load(); a != nil {
			// An application awaiting messages has not been told of
			// this one: its socket may have nothing left to report.
			c.wake(a)
		}
		if handOver == nil {
			handOver = time.NewTimer(handOverWait)
			defer handOver.Stop()
		} else {
			handOver.Reset(handOverWait)
		}
		select {
		case <-handOver.C:
		case <-c.closeReceived:
		case <-c.closed:
		case <-ctx.Done():
		}
	}
}

// readProgress tells whether a reader has moved on in a message.
type readProgress struct {
	held             bool
	frames, msgBytes int64
	frameLeft        int64
}

func (r *readState) progress() readProgress {
	return readProgress{r.held, r.frames, r.msgBytes, r.frameLeft}
}

// readToClose reads and discards messages until the read side ends, at the
// peer's Close frame at best. The caller holds the read lock.
func (c *Conn) readToClose(ctx context.Context) {
	c.readDeadline.begin(ctx)
	defer c.readDeadline.end()
	for c.rd.err == nil {
		if _, err := c.nextMessage(ctx); err != nil {
			return
		}
	}
}

// closeResult turns how the read side ended into Close's result.
func (c *Conn) closeResult(ctx context.Context) error {
	select {
	case <-c.closeReceived:
		return nil
	default:
	}
	// The socket deadline taken from ctx can fire a moment before ctx
	// says it is done.
	if dl, _ := ctx.Deadline(); ctx.Err() != nil || !time.Now().Before(dl) {
		return fmt.Errorf("websocket: peer did not answer the close frame within %v", closeHandshakeTimeout)
	}
	select {
	case <-c.closed:
		if lost := c.readLost.Load(); lost != nil {
			return fmt.Errorf("websocket: the peer went away before it answered the close frame: %w", lost)
		}
		return fmt.Errorf("websocket: connection closed before the peer answered the close frame: %w", net.ErrClosed)
	default:
	}
	return errors.New("websocket: connection failed during the closing handshake")
}

// handleClose answers the peer's Close frame: it echoes the status code if we
// had not sent a Close frame of our own, records the frame for readers and
// closes the TCP connection (the client after waiting for the server to go
// first). It returns the CloseError that reads report from now on.
func (c *Conn) handleClose(ctx context.Context, payload []byte) error {
	ce, failCode, err := parseClosePayload(payload)
	if err != nil {
		return c.fail(failCode, err.Error())
	}
	if c.onClose != nil {
		c.onClose(ce.Code, ce.Reason)
	}
	// Writing the echo fails harmlessly when our own Close went first.
	// Under load it may wait long for the write lock, for as long as the
	// read may take; should a deadline stop it, the peer is owed the echo
	// all the same.
	if err := c.writeClose(ctx, ce.Code, ""); err != nil && isTimeout(err) {
		c.sendClose(ce.Code, "")
	}
	c.rd.err = ce
	c.endReads(false) // the read side is over; payload is not used from here on
	c.closeReceivedOnce.Do(func() { close(c.closeReceived) })
	if c.server {
		c.teardown()
	} else {
		c.linger()
	}
	return ce
}

// fail fails the connection (§7.1.7): it sends a Close frame with code and
// the reason, then closes the connection. It returns the error that reads
// report from now on.
func (c *Conn) fail(code StatusCode, reason string) error {
	err := &connError{code: code, msg: reason}
	if c.rd.err != nil {
		return c.rd.err
	}
	c.rd.err = err
	if len(reason) > maxCloseReason {
		reason = reason[:maxCloseReason]
		for !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	c.sendClose(code, reason)
	c.linger()
	return err
}

// sendClose sends a Close frame as the connection ends, bounded by
// closeLingerTimeout rather than by the context of the read that ends it,
// which may be over: the peer is owed the frame either way (§5.5.1).
func (c *Conn) sendClose(code StatusCode, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), closeLingerTimeout)
	_ = c.writeClose(ctx, code, reason)
	cancel()
}

// linger closes our side of the TCP connection and then reads and discards
// what the peer still sends, for at most a second, until it closes its side.
// Closing a socket with unread data makes the kernel send a reset, which can
// destroy our Close frame before the peer reads it; a client also lets the
// server close the TCP connection first (§7.1.1). The caller holds the read
// lock.
func (c *Conn) linger() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(closeLingerTimeout))
	c.in.discardAll()
	c.endReads(false)
	c.teardown()
}
