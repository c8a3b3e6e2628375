package thirdparty

import (
	"bytes"
	"compress/flate"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator is a WebSocket client written against raw TCP, so
// that it favours none of the libraries: it does the opening handshake by
// hand, writes frames built once in advance, and reads echoes with a
// parser that does no more than split frames.

// genMask is the masking key of every frame the generator sends. A fixed
// key is allowed for a client that is not a browser running untrusted
// script (RFC 6455 §10.3 is about those), and lets frames be built once.
var genMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// message is what the generator sends and expects back.
type message struct {
	payload []byte // as the application sees it
	op      byte   // opText or opBinary
	deflate bool   // sent compressed (RSV1), on a connection that negotiated permessage-deflate
	wire    []byte // the masked frame carrying it
}

func newMessage(payload []byte, op byte, deflate bool) *message {
	m := &message{payload: payload, op: op, deflate: deflate}
	if deflate {
		m.wire = appendFrame(nil, 0x80|0x40|op, deflateRaw(payload))
	} else {
		m.wire = appendFrame(nil, 0x80|op, payload)
	}
	return m
}

// appendFrame appends a masked frame with first byte b0 (FIN, RSV and
// opcode) and the given payload.
func appendFrame(dst []byte, b0 byte, payload []byte) []byte {
	n := len(payload)
	switch {
	case n < 126:
		dst = append(dst, b0, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, b0, 0x80|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, b0, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, genMask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	for i := range dst[start:] {
		dst[start+i] ^= genMask[i&3]
	}
	return dst
}

// closeFrame is a masked Close frame with status 1000.
var closeFrame = appendFrame(nil, 0x80|opClose, []byte{0x03, 0xe8})

// deflateTail ends every flushed deflate block; RFC 7692 §7.2.1 has the
// sender strip it and the receiver put it back.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// deflateRaw compresses p as one permessage-deflate message with no
// context: raw deflate, flushed, without the tail.
func deflateRaw(p []byte) []byte {
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, flate.BestSpeed)
	fw.Write(p)
	fw.Flush()
	return bytes.TrimSuffix(buf.Bytes(), deflateTail)
}

// inflater decompresses permessage-deflate messages, reusing its state.
type inflater struct {
	in  []byte
	out []byte
	src bytes.Reader
	fr  io.ReadCloser
}

// inflateEnd is the tail plus an empty final stored block, so that
// compress/flate reports io.EOF at the end of the message.
var inflateEnd = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

func (f *inflater) inflate(p []byte) ([]byte, error) {
	f.in = append(append(f.in[:0], p...), inflateEnd...)
	f.src.Reset(f.in)
	if f.fr == nil {
		f.fr = flate.NewReader(&f.src)
	} else {
		f.fr.(flate.Resetter).Reset(&f.src, nil)
	}
	out := f.out[:0]
	for {
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)]
		}
		n, err := f.fr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			f.out = out
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// frameReader splits a server's byte stream into frames.
type frameReader struct {
	src     io.Reader
	buf     []byte
	r, w    int
	big     []byte // payloads larger than buf
	onBlock func() // called before every read from src
}

// fill reads until n bytes are buffered; n must not exceed len(buf).
func (f *frameReader) fill(n int) error {
	if f.w-f.r >= n {
		return nil
	}
	// Move what is left of the buffered data to the front, so that reads
	// fill most of the buffer rather than a sliver at its end.
	if f.r > 0 && (len(f.buf)-f.r < n || len(f.buf)-f.w < len(f.buf)/2) {
		f.w = copy(f.buf, f.buf[f.r:f.w])
		f.r = 0
	}
	for f.w-f.r < n {
		if f.onBlock != nil {
			f.onBlock()
		}
		m, err := f.src.Read(f.buf[f.w:])
		f.w += m
		if err != nil && f.w-f.r < n {
			if err == io.EOF && f.w > f.r {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

type frameHeader struct {
	fin    bool
	rsv1   bool
	op     byte
	length int
}

// next returns the next frame; its payload is valid until the next call.
func (f *frameReader) next() (frameHeader, []byte, error) {
	var h frameHeader
	if err := f.fill(2); err != nil {
		return h, nil, err
	}
	b0, b1 := f.buf[f.r], f.buf[f.r+1]
	h.fin, h.rsv1, h.op = b0&0x80 != 0, b0&0x40 != 0, b0&0x0f
	if b0&0x30 != 0 {
		return h, nil, fmt.Errorf("server frame has RSV2 or RSV3 set: %#x", b0)
	}
	if b1&0x80 != 0 {
		return h, nil, errors.New("server frame is masked")
	}
	hlen := 2
	switch b1 & 0x7f {
	case 126:
		hlen = 4
	case 127:
		hlen = 10
	}
	if err := f.fill(hlen); err != nil {
		return h, nil, err
	}
	switch hlen {
	case 2:
		h.length = int(b1 & 0x7f)
	case 4:
		h.length = int(binary.BigEndian.Uint16(f.buf[f.r+2:]))
	default:
		n := binary.BigEndian.Uint64(f.buf[f.r+2:])
		if n > 64<<20 {
			return h, nil, fmt.Errorf("server frame claims %d bytes", n)
		}
		h.length = int(n)
	}
	f.r += hlen
	if h.length <= len(f.buf) {
		if err := f.fill(h.length); err != nil {
			return h, nil, err
		}
		p := f.buf[f.r : f.r+h.length]
		f.r += h.length
		return h, p, nil
	}
	if cap(f.big) < h.length {
		f.big = make([]byte, h.length)
	}
	p := f.big[:h.length]
	k := copy(p, f.buf[f.r:f.w])
	f.r, f.w = 0, 0
	if f.onBlock != nil {
		f.onBlock()
	}
	if _, err := io.ReadFull(f.src, p[k:]); err != nil {
		return h, nil, err
	}
	return h, p, nil
}

// wsConn is one client connection of the generator.
type wsConn struct {
	nc        net.Conn
	fr        frameReader
	frag      []byte // a fragmented message being reassembled
	inflate   inflater
	closeSeen bool
}

// errServerClosed is returned once the server's Close frame is read.
var errServerClosed = errors.New("server sent a Close frame")

// dialWS connects to addr and performs the opening handshake, offering
// permessage-deflate without context takeover when deflate is set. bufSize
// is the size of the connection's read buffer.
func dialWS(addr string, deflate bool, bufSize int, timeout time.Duration) (*wsConn, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	c := &wsConn{nc: nc}
	c.fr = frameReader{src: nc, buf: make([]byte, bufSize)}
	if err := c.handshake(addr, deflate, timeout); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *wsConn) handshake(addr string, deflate bool, timeout time.Duration) error {
	c.nc.SetDeadline(time.Now().Add(timeout))
	defer c.nc.SetDeadline(time.Time{})
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET / HTTP/1.1\r\nHost: " + addr +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n"
	if deflate {
		req += "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
	}
	if _, err := io.WriteString(c.nc, req+"\r\n"); err != nil {
		return err
	}
	head, err := c.readHead()
	if err != nil {
		return fmt.Errorf("reading the handshake response: %w", err)
	}
	lines := strings.Split(head, "\r\n")
	if !strings.HasPrefix(lines[0], "HTTP/1.1 101 ") {
		return fmt.Errorf("handshake answered %q", lines[0])
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	wantAccept := base64.StdEncoding.EncodeToString(sum[:])
	var accept, extensions string
	for _, l := range lines[1:] {
		name, value, _ := strings.Cut(l, ":")
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "sec-websocket-accept":
			accept = value
		case "sec-websocket-extensions":
			extensions += value + ","
		}
	}
	if accept != wantAccept {
		return fmt.Errorf("Sec-WebSocket-Accept is %q, want %q", accept, wantAccept)
	}
	if deflate != strings.Contains(extensions, "permessage-deflate") {
		return fmt.Errorf("offered deflate=%v, server answered extensions %q", deflate, extensions)
	}
	return nil
}

// readHead reads the response up to its blank line; whatever follows stays
// buffered for frames.
func (c *wsConn) readHead() (string, error) {
	f := &c.fr
	for {
		if i := bytes.Index(f.buf[f.r:f.w], []byte("\r\n\r\n")); i >= 0 {
			head := string(f.buf[f.r : f.r+i])
			f.r += i + 4
			return head, nil
		}
		if f.w == len(f.buf) {
			return "", errors.New("response head too long")
		}
		n, err := c.nc.Read(f.buf[f.w:])
		f.w += n
		if err != nil {
			return "", err
		}
	}
}

// readMessage returns the next data message, reassembled if fragmented;
// it is valid until the next call. Pings and pongs are skipped (the
// generator sends no pings and servers send none unasked). After the
// server's Close frame it returns errServerClosed.
func (c *wsConn) readMessage() (op byte, compressed bool, payload []byte, err error) {
	fragmented := false
	for {
		h, p, err := c.fr.next()
		if err != nil {
			return 0, false, nil, err
		}
		switch {
		case h.op == opClose:
			c.closeSeen = true
			if len(p) >= 2 {
				if code := binary.BigEndian.Uint16(p); code != 1000 {
					return 0, false, nil, fmt.Errorf("server closed with status %d %q", code, p[2:])
				}
			}
			return 0, false, nil, errServerClosed
		case h.op == opPing || h.op == opPong:
			continue
		case h.op == opContinuation:
			if !fragmented {
				return 0, false, nil, errors.New("continuation frame outside a message")
			}
			c.frag = append(c.frag, p...)
			if h.fin {
				return op, compressed, c.frag, nil
			}
		case fragmented:
			return 0, false, nil, fmt.Errorf("opcode %d in the middle of a fragmented message", h.op)
		default:
			op, compressed = h.op, h.rsv1
			if h.fin {
				return op, compressed, p, nil
			}
			fragmented = true
			c.frag = append(c.frag[:0], p...)
		}
	}
}

// check compares an echo with the message sent. A compressed echo is
// inflated only when inflate is set, as that costs more than the server's
// work.
func (c *wsConn) check(m *message, op byte, compressed bool, p []byte, inflate bool) error {
	if op != m.op {
		return fmt.Errorf("echo has opcode %d, sent %d", op, m.op)
	}
	if compressed {
		if !m.deflate {
			return errors.New("compressed echo on a connection without permessage-deflate")
		}
		if !inflate {
			return nil
		}
		var err error
		if p, err = c.inflate.inflate(p); err != nil {
			return fmt.Errorf("inflating the echo: %w", err)
		}
	}
	if !bytes.Equal(p, m.payload) {
		return fmt.Errorf("echo of %d bytes differs from the %d bytes sent", len(p), len(m.payload))
	}
	return nil
}

// echo sends m once and checks the reply.
func (c *wsConn) echo(m *message) error {
	if _, err := c.nc.Write(m.wire); err != nil {
		return err
	}
	op, compressed, p, err := c.readMessage()
	if err != nil {
		return err
	}
	return c.check(m, op, compressed, p, true)
}

// finish sends a Close frame, reads up to the server's (data messages in
// between are dropped), waits for the server to close the TCP connection,
// as §7.1.1 has the server close first, and closes it. All within timeout.
func (c *wsConn) finish(timeout time.Duration) error {
	defer c.nc.Close()
	c.nc.SetDeadline(time.Now().Add(timeout))
	if _, err := c.nc.Write(closeFrame); err != nil {
		return err
	}
	return c.awaitClose()
}

// awaitClose reads up to the server's Close frame, then to end of stream.
func (c *wsConn) awaitClose() error {
	for !c.closeSeen {
		if _, _, _, err := c.readMessage(); err != nil && err != errServerClosed {
			return fmt.Errorf("waiting for the server's Close frame: %w", err)
		}
	}
	c.fr.onBlock = nil
	var scratch [64]byte
	for {
		if _, err := c.nc.Read(scratch[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return fmt.Errorf("waiting for the server to close the connection after the close handshake: %w", err)
		}
	}
}

// dialMany opens n connections, at most 64 at a time, and calls setup
// on each.
func dialMany(addr string, n int, deflate bool, bufSize int, setup func(*wsConn) error) ([]*wsConn, error) {
	conns := make([]*wsConn, n)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(n, 64) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := dialWS(addr, deflate, bufSize, 10*time.Second)
				if err == nil && setup != nil {
					c.nc.SetDeadline(time.Now().Add(10 * time.Second))
					err = setup(c)
					c.nc.SetDeadline(time.Time{})
					if err != nil {
						c.nc.Close()
					}
				}
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("connection %d: %w", i, err) })
					next.Store(int64(n))
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		for _, c := range conns {
			if c != nil {
				c.nc.Close()
			}
		}
		return nil, firstErr
	}
	return conns, nil
}

// finishAll closes every connection with a close handshake, 64 at a time.
func finishAll(conns []*wsConn, timeout time.Duration) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(len(conns), 64) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(conns) {
					return
				}
				if err := conns[i].finish(timeout); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("closing connection %d: %w", i, err) })
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// load keeps window messages outstanding on each of its connections: a
// writer goroutine per connection sends a message for every echo its
// reader goroutine has received, batching them into one write.
type load struct {
	msg      *message
	batch    []byte // msg.wire repeated, so that a batch is one write
	per      int    // messages in batch
	conns    []*loadConn
	stopping atomic.Bool
	stopCh   chan struct{}
	wg       sync.WaitGroup

	errMu sync.Mutex
	errs  []error
}

type loadConn struct {
	*wsConn
	credit atomic.Int64  // messages the writer may send
	wake   chan struct{} // tells the writer about new credit
	echoes atomic.Int64  // echoes received and checked
	sent   atomic.Int64  // messages written, final once the Close frame is
}

// startLoad opens conns connections to addr and starts the traffic. One
// echo in verifyEvery is inflated and compared when compressed;
// uncompressed echoes are always compared.
func startLoad(addr string, m *message, conns, window, verifyEvery int) (*load, error) {
	l := &load{msg: m, stopCh: make(chan struct{})}
	l.per = max(1, min(window, (64<<10)/len(m.wire)))
	l.batch = bytes.Repeat(m.wire, l.per)
	bufSize := min(max(window*len(m.wire), 4<<10), 256<<10)
	wcs, err := dialMany(addr, conns, m.deflate, bufSize, nil)
	if err != nil {
		return nil, err
	}
	for _, c := range wcs {
		lc := &loadConn{wsConn: c, wake: make(chan struct{}, 1)}
		lc.credit.Store(int64(window))
		l.conns = append(l.conns, lc)
	}
	for _, c := range l.conns {
		l.wg.Add(2)
		go l.write(c)
		go l.read(c, verifyEvery)
	}
	return l, nil
}

func (l *load) fail(c *loadConn, err error) {
	l.errMu.Lock()
	l.errs = append(l.errs, err)
	l.errMu.Unlock()
	c.nc.Close()
}

func (l *load) write(c *loadConn) {
	defer l.wg.Done()
	var sent int64
	defer func() { c.sent.Store(sent) }()
	wire := len(l.msg.wire)
	for !l.stopping.Load() {
		n := int(c.credit.Swap(0))
		if n == 0 {
			select {
			case <-c.wake:
			case <-l.stopCh:
			}
			continue
		}
		for n > 0 {
			k := min(n, l.per)
			if _, err := c.nc.Write(l.batch[:k*wire]); err != nil {
				l.fail(c, fmt.Errorf("writing: %w", err))
				return
			}
			n -= k
			sent += int64(k)
		}
	}
	c.sent.Store(sent)
	if _, err := c.nc.Write(closeFrame); err != nil {
		l.fail(c, fmt.Errorf("writing the Close frame: %w", err))
	}
}

func (l *load) read(c *loadConn, verifyEvery int) {
	defer l.wg.Done()
	pending := int64(0)
	flush := func() {
		if pending == 0 {
			return
		}
		c.echoes.Add(pending)
		c.credit.Add(pending)
		pending = 0
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	c.fr.onBlock = flush
	for i := 0; ; i++ {
		op, compressed, p, err := c.readMessage()
		if err == errServerClosed {
			break
		}
		if err != nil {
			flush()
			if l.stopping.Load() && isTimeout(err) {
				err = fmt.Errorf("%d echoes outstanding at the end: %w", c.sent.Load()-c.echoes.Load(), err)
			}
			l.fail(c, fmt.Errorf("reading: %w", err))
			return
		}
		if err := c.check(l.msg, op, compressed, p, i%verifyEvery == 0); err != nil {
			l.fail(c, err)
			return
		}
		pending++
	}
	flush()
	if got, sent := c.echoes.Load(), c.sent.Load(); got != sent {
		l.fail(c, fmt.Errorf("server closed after %d echoes of %d messages", got, sent))
		return
	}
	if err := c.awaitClose(); err != nil {
		l.fail(c, err)
		return
	}
	c.nc.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// echoes returns how many echoes have been received so far.
func (l *load) echoes() int64 {
	var n int64
	for _, c := range l.conns {
		n += c.echoes.Load()
	}
	return n
}

// stop stops sending, waits up to timeout for the outstanding echoes and
// the close handshakes, and returns what went wrong, if anything.
func (l *load) stop(timeout time.Duration) error {
	l.stopping.Store(true)
	close(l.stopCh)
	deadline := time.Now().Add(timeout)
	for _, c := range l.conns {
		c.nc.SetDeadline(deadline)
	}
	l.wg.Wait()
	l.errMu.Lock()
	defer l.errMu.Unlock()
	if len(l.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d connections failed; first: %w", len(l.errs), len(l.conns), l.errs[0])
}

// handshakes opens and closes connections from workers goroutines until
// stop is closed, counting the completed ones (opening handshake, Close
// frames both ways, the server's TCP close).
func handshakes(addr string, workers int, count *atomic.Int64, stop <-chan struct{}) error {
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := dialWS(addr, false, 1<<10, 10*time.Second)
				if err == nil {
					err = c.finish(10 * time.Second)
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	return firstErr
}
