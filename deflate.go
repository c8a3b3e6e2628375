package websocket

import (
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// CompressionOptions configures permessage-deflate (RFC 7692). The zero value
// compresses every message of 128 bytes or more at [flate.BestSpeed], with a
// fresh compression context per message.
type CompressionOptions struct {
	// ContextTakeover lets each message refer back to the ones before it
	// (the last 32 KiB), in both directions, which compresses streams of
	// similar small messages much better. It costs memory for as long as
	// the connection lives: compress/flate's compressor state (about
	// 1 MiB, allocated at the first compressed write) and a 64 KiB window
	// for decompression. Without it a connection keeps nothing between
	// messages: compressors and decompressors come from shared pools.
	ContextTakeover bool

	// Level is the compress/flate level, from [flate.BestSpeed] (1) to
	// [flate.BestCompression] (9), or [flate.HuffmanOnly]. 0 means
	// flate.BestSpeed.
	Level int

	// Threshold is the size below which a message is sent uncompressed, as
	// compression gains little on it. 0 means 128 bytes; a negative value
	// compresses every message. Streamed messages ([Conn.Writer]) are
	// always compressed.
	Threshold int
}

func (o *CompressionOptions) level() int {
	if o.Level == 0 {
		return flate.BestSpeed
	}
	return o.Level
}

func (o *CompressionOptions) threshold() int {
	if o.Threshold == 0 {
		return 128
	}
	return max(o.Threshold, 0)
}

// extensions is what the opening handshake agreed on.
type extensions struct {
	deflate *deflateParams
}

// deflateParams is a negotiated permessage-deflate, from our side.
type deflateParams struct {
	compressTakeover bool // our compressor may refer to earlier messages
	inflateTakeover  bool // the peer's may: keep a window of what we read
	level            int  // flate.HuffmanOnly when the peer bounds our window
	threshold        int
}

// deflateOffer is one offer (or response) in Sec-WebSocket-Extensions, with
// its parameters as RFC 7692 §7.1 defines them.
type deflateOffer struct {
	serverNoTakeover, clientNoTakeover bool
	serverMaxBits                      int  // 0 if absent
	clientMaxBits                      int  // 0 if absent or without a value
	clientMaxBitsOffered               bool // present, with or without a value
}

// parseExtensions splits a Sec-WebSocket-Extensions header into extensions,
// each a name and its parameters; values may be tokens or quoted strings.
func parseExtensions(h http.Header) []extension {
	var exts []extension
	for _, v := range h.Values("Sec-WebSocket-Extensions") {
		for _, item := range splitOutsideQuotes(v, ',') {
			parts := splitOutsideQuotes(item, ';')
			name := strings.TrimSpace(parts[0])
			if name == "" {
				continue
			}
			e := extension{name: strings.ToLower(name)}
			for _, p := range parts[1:] {
				k, val, hasVal := strings.Cut(p, "=")
				k = strings.ToLower(strings.TrimSpace(k))
				val = strings.TrimSpace(val)
				if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
					val = val[1 : len(val)-1]
				}
				e.params = append(e.params, extParam{k, val, hasVal})
			}
			exts = append(exts, e)
		}
	}
	return exts
}

type extension struct {
	name   string
	params []extParam
}

type extParam struct {
	name, value string
	hasValue    bool
}

// splitOutsideQuotes splits s at each sep that is not inside a quoted string.
func splitOutsideQuotes(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			quoted = !quoted
		case c == '\\' && quoted:
			i++
		case c == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// parseDeflate reads the parameters of a permessage-deflate offer or
// response. It fails on an unknown or repeated parameter or a bad value,
// which makes a server decline the offer and a client fail the handshake.
func parseDeflate(e extension) (deflateOffer, error) {
	var o deflateOffer
	seen := map[string]bool{}
	for _, p := range e.params {
		if seen[p.name] {
			return o, fmt.Errorf("permessage-deflate parameter %s appears twice", p.name)
		}
		seen[p.name] = true
		switch p.name {
		case "server_no_context_takeover", "client_no_context_takeover":
			if p.hasValue {
				return o, fmt.Errorf("permessage-deflate parameter %s takes no value", p.name)
			}
			if p.name == "server_no_context_takeover" {
				o.serverNoTakeover = true
			} else {
				o.clientNoTakeover = true
			}
		case "server_max_window_bits", "client_max_window_bits":
			bits := 0
			if p.hasValue {
				n, err := strconv.Atoi(p.value)
				if err != nil || n < 8 || n > 15 || p.value[0] == '+' {
					return o, fmt.Errorf("permessage-deflate parameter %s=%q is not a window size from 8 to 15", p.name, p.value)
				}
				bits = n
			}
			if p.name == "server_max_window_bits" {
				if !p.hasValue {
					return o, errors.New("permessage-deflate parameter server_max_window_bits needs a value")
				}
				o.serverMaxBits = bits
			} else {
				o.clientMaxBits = bits
				o.clientMaxBitsOffered = true
			}
		default:
			return o, fmt.Errorf("permessage-deflate has unknown parameter %q", p.name)
		}
	}
	return o, nil
}

// acceptExtensions picks, on a server, the first permessage-deflate offer it
// can honour, and returns the agreement and the response header value.
// Offers it cannot parse are declined, never failing the handshake.
func acceptExtensions(h http.Header, opts *CompressionOptions) (extensions, string) {
	if opts == nil {
		return extensions{}, ""
	}
	for _, e := range parseExtensions(h) {
		if e.name != "permessage-deflate" {
			continue
		}
		offer, err := parseDeflate(e)
		if err != nil {
			continue
		}
		p := &deflateParams{
			compressTakeover: opts.ContextTakeover && !offer.serverNoTakeover,
			inflateTakeover:  opts.ContextTakeover && !offer.clientNoTakeover,
			level:            opts.level(),
			threshold:        opts.threshold(),
		}
		resp := "permessage-deflate"
		if !p.compressTakeover {
			resp += "; server_no_context_takeover"
		}
		if !p.inflateTakeover {
			// A server may ask this even when the client did not
			// offer it (§7.1.1.2); it spares us the window.
			resp += "; client_no_context_takeover"
		}
		if offer.serverMaxBits != 0 {
			// compress/flate always uses a 32 KiB window. To stay
			// within a smaller one we send Huffman-only blocks,
			// which refer back to nothing.
			resp += "; server_max_window_bits=" + strconv.Itoa(offer.serverMaxBits)
			if offer.serverMaxBits < 15 {
				p.level = flate.HuffmanOnly
			}
		}
		return extensions{deflate: p}, resp
	}
	return extensions{}, ""
}

// offerExtensions returns a client's Sec-WebSocket-Extensions offer.
func offerExtensions(opts *CompressionOptions) string {
	if opts == nil {
		return ""
	}
	if opts.ContextTakeover {
		return "permessage-deflate; client_max_window_bits"
	}
	return "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"
}

// acceptedExtensions checks, on a client, the server's choice of extensions
// against what we offered.
func acceptedExtensions(h http.Header, opts *CompressionOptions) (extensions, error) {
	exts := parseExtensions(h)
	if len(exts) == 0 {
		return extensions{}, nil
	}
	if len(exts) > 1 || exts[0].name != "permessage-deflate" || opts == nil {
		return extensions{}, fmt.Errorf("server accepted extensions %q, which we did not offer", strings.Join(h.Values("Sec-WebSocket-Extensions"), ", "))
	}
	resp, err := parseDeflate(exts[0])
	if err != nil {
		return extensions{}, fmt.Errorf("server's permessage-deflate response is invalid: %v", err)
	}
	if !opts.ContextTakeover && !resp.serverNoTakeover {
		return extensions{}, errors.New("server's permessage-deflate response lacks server_no_context_takeover, which we asked for")
	}
	if resp.clientMaxBitsOffered && resp.clientMaxBits == 0 {
		return extensions{}, errors.New("server's permessage-deflate response has client_max_window_bits without a value")
	}
	p := &deflateParams{
		compressTakeover: opts.ContextTakeover && !resp.clientNoTakeover,
		inflateTakeover:  !resp.serverNoTakeover,
		level:            opts.level(),
		threshold:        opts.threshold(),
	}
	if resp.clientMaxBits != 0 && resp.clientMaxBits < 15 {
		p.level = flate.HuffmanOnly // see acceptExtensions
	}
	return extensions{deflate: p}, nil
}

// flateState is a connection's compression state, made when
// permessage-deflate was negotiated.
type flateState struct {
	// Writing, under the message lock.
	fw   *flate.Writer // kept only with context takeover
	sink deflateSink

	// Reading, under the read lock.
	fr         io.ReadCloser // while a compressed message is being read
	src        inflateSource
	window     []byte // the last 32 KiB read, with context takeover
	broken     bool   // the current message's decompression was cut short
	windowLost bool   // ... and with it the window takeover needs
}

const flateWindow = 32 << 10

// deflateTail ends a message's compressed payload for the reader: the
// 00 00 ff ff that the sender removed (§7.2.2), then an empty final stored
// block so that the decompressor reports io.EOF.
var deflateTail = [...]byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

var flateWriters [flate.BestCompression - flate.HuffmanOnly + 1]sync.Pool

// getFlateWriter returns a pooled compressor at level writing to w.
func getFlateWriter(level int, w io.Writer) *flate.Writer {
	if fw, ok := flateWriters[level-flate.HuffmanOnly].Get().(*flate.Writer); ok {
		fw.Reset(w)
		return fw
	}
	fw, _ := flate.NewWriter(w, level)
	return fw
}

func putFlateWriter(level int, fw *flate.Writer) {
	flateWriters[level-flate.HuffmanOnly].Put(fw)
}

var flateReaders = sync.Pool{New: func() any {
	return flate.NewReader(bytes.NewReader(nil))
}}

// compressing reports whether a message of n bytes (n < 0: of unknown size)
// is to be compressed.
func (c *Conn) compressing(n int) bool {
	p := c.ext.deflate
	return p != nil && !c.noCompress.Load() && (n < 0 || n >= p.threshold)
}

// SetCompression turns compression of the messages written from now on off
// or back on, where permessage-deflate was negotiated; messages the peer
// compresses are still read. It is safe to call from any goroutine.
func (c *Conn) SetCompression(enabled bool) { c.noCompress.Store(!enabled) }

// deflateSink collects compressed bytes for a message. Streaming, it sends a
// frame whenever a frame's worth has collected, always holding back the last
// four bytes: the flush marker that ends the message must be cut (§7.2.1),
// and only at the end is it known to be the last.
type deflateSink struct {
	pooled *[]byte // where buf came from, to go back to writeBuffers
	buf    []byte
	stream *messageWriter // nil for a whole message
	err    error
}

func (s *deflateSink) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	s.buf = append(s.buf, p...)
	if s.stream != nil && len(s.buf) >= writeBufferSize+4 {
		keep := len(s.buf) - 4
		if s.err = s.stream.flush(s.buf[:keep], false); s.err != nil {
			return 0, s.err
		}
		s.buf = s.buf[:copy(s.buf, s.buf[keep:])]
	}
	return len(p), nil
}

// begin prepares the compressor for a message, streamed or not.
func (f *flateState) begin(p *deflateParams, stream *messageWriter) *flate.Writer {
	bp := writeBuffers.Get().(*[]byte)
	f.sink = deflateSink{pooled: bp, buf: (*bp)[:0], stream: stream}
	if p.compressTakeover {
		if f.fw == nil {
			f.fw, _ = flate.NewWriter(&f.sink, p.level)
		}
		return f.fw
	}
	return getFlateWriter(p.level, &f.sink)
}

// finish flushes the compressor and returns the message's remaining
// compressed bytes with the flush marker cut. The result is valid until end.
func (f *flateState) finish(p *deflateParams, fw *flate.Writer) ([]byte, error) {
	err := fw.Flush()
	if !p.compressTakeover {
		putFlateWriter(p.level, fw)
	}
	if err == nil {
		err = f.sink.err
	}
	b := f.sink.buf
	if err != nil {
		return nil, err
	}
	if !bytes.HasSuffix(b, deflateTail[:4]) {
		return nil, errors.New("websocket: compressor did not end with a flush marker")
	}
	b = b[:len(b)-4]
	if len(b) == 0 && (f.sink.stream == nil || f.sink.stream.op != OpContinuation) {
		// An empty message compresses to nothing; send the one-byte
		// empty block RFC 7692 §7.2.3.6 shows.
		b = append(b, 0x00)
	}
	return b, nil
}

// end returns the sink's buffer to the pool.
func (f *flateState) end() {
	// A buffer that grew for a large message is left to the collector;
	// the pool keeps buffers of one size.
	if bp := f.sink.pooled; bp != nil && cap(f.sink.buf) == cap(*bp) {
		writeBuffers.Put(bp)
	}
	f.sink = deflateSink{}
}

// writeCompressed writes p as one compressed frame. The caller holds the
// message lock.
func (c *Conn) writeCompressed(ctx context.Context, typ MessageType, p []byte) error {
	params := c.ext.deflate
	fw := c.flate.begin(params, nil)
	defer c.flate.end()
	if _, err := fw.Write(p); err != nil {
		return err
	}
	payload, err := c.flate.finish(params, fw)
	if err != nil {
		return err
	}
	if err := c.writeFrame(ctx, Header{Fin: true, Rsv1: true, Opcode: Opcode(typ)}, payload); err != nil {
		return c.compressedWriteFailed(err)
	}
	return nil
}

// compressedWriteFailed is what a compressed message whose first frame
// could not be sent does to the connection. Without context takeover
// nothing: the message is dropped. With it the message is in the
// compressor's window, which the peer's decompressor will never have, so
// every later message would decompress wrongly: the connection fails.
func (c *Conn) compressedWriteFailed(err error) error {
	if c.ext.deflate.compressTakeover {
		return c.breakWrites("a compressed message with context takeover", err)
	}
	return err
}

// writeCompressed compresses p into the streamed message.
func (w *messageWriter) writeCompressed(p []byte) (int, error) {
	f := w.c.flate
	if f.sink.stream == nil {
		w.fw = f.begin(w.c.ext.deflate, w)
	}
	return w.fw.Write(p)
}

// closeCompressed ends a compressed streamed message.
func (w *messageWriter) closeCompressed() error {
	f := w.c.flate
	if f.sink.stream == nil {
		w.fw = f.begin(w.c.ext.deflate, w)
	}
	defer f.end()
	payload, err := f.finish(w.c.ext.deflate, w.fw)
	w.fw = nil
	if err != nil {
		return err
	}
	return w.flush(payload, true)
}

// inflateSource feeds a compressed message to the decompressor: the raw
// payload of its frames, then deflateTail. It is an io.ByteReader, so that
// the decompressor reads exactly what it needs and no further.
type inflateSource struct {
	c       *Conn
	ctx     context.Context
	payload bool // the payload has been read to its end
	tail    int  // bytes of deflateTail handed out
	one     [1]byte
}

func (s *inflateSource) ReadByte() (byte, error) {
	c := s.c
	if !s.payload && c.rd.frameLeft > 0 && c.in.r < c.in.w {
		b := c.in.buf[c.in.r]
		c.in.r++
		c.rd.frameLeft--
		if c.rd.frame.Masked {
			b ^= byte(c.rd.maskKey)
			c.rd.maskKey = c.rd.maskKey>>8 | c.rd.maskKey<<24
		}
		return b, nil
	}
	if _, err := s.Read(s.one[:]); err != nil {
		return 0, err
	}
	return s.one[0], nil
}

func (s *inflateSource) Read(p []byte) (int, error) {
	if !s.payload {
		n, err := s.c.readPayload(s.ctx, p)
		if err != io.EOF {
			return n, err
		}
		s.payload = true
		if n > 0 {
			return n, nil
		}
	}
	if s.tail == len(deflateTail) {
		return 0, io.EOF
	}
	n := copy(p, deflateTail[s.tail:])
	s.tail += n
	return n, nil
}

// inflate reads decompressed bytes of the current message into p. The caller
// holds the read lock and applies the read limit to what it returns.
func (c *Conn) inflate(ctx context.Context, p []byte) (int, error) {
	f := c.flate
	if f == nil {
		return 0, c.fail(StatusProtocolError, "compressed message without permessage-deflate")
	}
	if f.broken {
		return 0, errors.New("websocket: this message's decompression was cut short by a timeout; read the next message")
	}
	takeover := c.ext.deflate.inflateTakeover
	if f.fr == nil {
		if takeover && f.windowLost {
			return 0, c.fail(StatusInternalError, "lost the decompression window after an interrupted read")
		}
		f.fr = flateReaders.Get().(io.ReadCloser)
		f.src = inflateSource{c: c}
		var dict []byte
		if takeover {
			dict = f.window[max(len(f.window)-flateWindow, 0):]
		}
		_ = f.fr.(flate.Resetter).Reset(&f.src, dict)
	}
	f.src.ctx = ctx
	n, err := f.fr.Read(p)
	if takeover && n > 0 {
		f.remember(p[:n])
	}
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		flateReaders.Put(f.fr)
		f.fr = nil
		if !f.src.payload || f.src.tail != len(deflateTail) {
			return n, c.fail(StatusInvalidFramePayloadData, "compressed message has data past the end of its deflate stream")
		}
		return n, io.EOF
	case c.rd.err != nil:
		return n, c.rd.err
	case isTimeout(err):
		flateReaders.Put(f.fr)
		f.fr = nil
		f.broken = true
		f.windowLost = f.windowLost || takeover
		return n, err
	}
	return n, c.fail(StatusInvalidFramePayloadData, "compressed message is not valid deflate data: "+err.Error())
}

// remember keeps the last 32 KiB of decompressed data, the window that the
// peer's next message may refer to.
func (f *flateState) remember(p []byte) {
	if f.window == nil {
		f.window = make([]byte, 0, 2*flateWindow)
	}
	if len(p) >= flateWindow {
		f.window = append(f.window[:0], p[len(p)-flateWindow:]...)
		return
	}
	if len(f.window)+len(p) > cap(f.window) {
		keep := flateWindow - len(p)
		f.window = f.window[:copy(f.window, f.window[len(f.window)-keep:])]
	}
	f.window = append(f.window, p...)
}

// discardCompressed drops the rest of a message whose decompression was cut
// short, reading its raw payload.
func (c *Conn) discardCompressed(ctx context.Context) error {
	bp := writeBuffers.Get().(*[]byte)
	defer writeBuffers.Put(bp)
	scratch := (*bp)[:cap(*bp)]
	for {
		if _, err := c.readPayload(ctx, scratch); err != nil {
			if err == io.EOF {
				c.flate.broken = false
				c.rd.inMessage = false
				return nil
			}
			return err
		}
	}
}
