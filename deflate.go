package websocket

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net/http"
	"slices"
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
	// flate.BestSpeed. Without context takeover, messages written whole
	// at BestSpeed or HuffmanOnly are compressed by this package's own
	// encoder, which does what compress/flate does at that level, in
	// less than half the time on short messages.
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
				// §7.1.2: "a decimal integer value without leading
				// zeroes between 8 to 15": written as Itoa writes it.
				n, err := strconv.Atoi(p.value)
				if err != nil || n < 8 || n > 15 || strconv.Itoa(n) != p.value {
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
	inf        *inflater // while a compressed message is being read
	window     []byte    // the last 32 KiB read, with context takeover
	broken     bool      // the current message's decompression was cut short
	windowLost bool      // ... and with it the window takeover needs
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

// compressing reports whether a message of n bytes (n < 0: of unknown size)
// is to be compressed.
func (c *Conn) compressing(n int) bool {
	p := c.ext.deflate
	if p == nil || c.noCompress.Load() || (n >= 0 && n < p.threshold) {
		return false
	}
	select {
	case <-c.closed:
		// The write can only fail, and with context takeover would
		// first take a compressor that the closed Conn then kept.
		return false
	default:
		return true
	}
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
			// Kept for the connection's life, and pooled after it
			// (releaseWriter): Reset makes a used one as good as new.
			f.fw = getFlateWriter(p.level, &f.sink)
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

// releaseWriter gives the compressor that context takeover keeps back to
// the pool, once the connection has closed. The caller holds the message
// lock.
func (f *flateState) releaseWriter(p *deflateParams) {
	if f.fw != nil {
		putFlateWriter(p.level, f.fw)
		f.fw = nil
	}
}

// releaseReader lets go of the inflater and the window of what was read,
// once reading has ended (see Conn.endReads). The inflater goes back to
// its pool only if pool. The caller holds the read lock.
func (f *flateState) releaseReader(pool bool) {
	if f.inf != nil && pool {
		putInflater(f.inf)
	}
	f.inf = nil
	f.window = nil
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

// compress returns msg compressed as one message's payload, valid until
// end.
func (f *flateState) compress(p *deflateParams, msg []byte) ([]byte, error) {
	if p.fastDeflate() {
		bp := writeBuffers.Get().(*[]byte)
		d := deflaters.Get().(*deflater)
		f.sink = deflateSink{pooled: bp, buf: d.compress((*bp)[:0], msg, p.level == flate.HuffmanOnly)}
		deflaters.Put(d)
		return f.sink.buf, nil
	}
	fw := f.begin(p, nil)
	if _, err := fw.Write(msg); err != nil {
		return nil, err
	}
	return f.finish(p, fw)
}

// writeCompressed writes p as one compressed frame. The caller holds the
// message lock.
func (c *Conn) writeCompressed(ctx context.Context, typ MessageType, p []byte) error {
	payload, err := c.flate.compress(c.ext.deflate, p)
	defer c.flate.end()
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

// inflater is a decompressor and the source that feeds it, pooled together:
// a connection holds one only while it reads a compressed message.
type inflater struct {
	fr  io.ReadCloser // compress/flate's, reading from src
	src inflateSource
}

var inflaters = sync.Pool{New: func() any {
	inf := new(inflater)
	inf.fr = flate.NewReader(&inf.src)
	return inf
}}

func putInflater(inf *inflater) {
	inf.src = inflateSource{} // keep no Conn alive from the pool
	inflaters.Put(inf)
}

// inflateSource feeds a compressed message to the decompressor: the raw
// payload of its frames, then deflateTail. compress/flate takes its input a
// byte at a time through ReadByte, so the payload is unmasked a buffer at a
// time by readPayload, with its end-of-message bookkeeping, and ReadByte
// only indexes the buffer.
type inflateSource struct {
	c       *Conn
	ctx     context.Context
	r, w    int   // buf[r:w] is not yet handed out
	err     error // from a read that also returned data, for the next fill
	payload bool  // readPayload has reported the message's end
	tail    bool  // deflateTail has gone into buf
	buf     [inflateChunk]byte
}

// inflateChunk is how much payload the decompressor's source buffers: most
// compressed messages in one read.
const inflateChunk = 4 << 10

func (s *inflateSource) ReadByte() (byte, error) {
	if s.r == s.w {
		if err := s.fill(); err != nil {
			return 0, err
		}
	}
	b := s.buf[s.r]
	s.r++
	return b, nil
}

func (s *inflateSource) Read(p []byte) (int, error) {
	if s.r == s.w {
		if err := s.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.buf[s.r:s.w])
	s.r += n
	return n, nil
}

// fill refills the empty buffer with payload, or with deflateTail after
// the payload's end; it returns io.EOF after the tail.
func (s *inflateSource) fill() error {
	s.r, s.w = 0, 0
	if s.err != nil {
		return s.err
	}
	if !s.payload {
		n, err := s.c.readPayload(s.ctx, s.buf[:])
		s.w = n
		switch {
		case err == io.EOF:
			s.payload = true
		case n > 0:
			s.err = err
			return nil
		default:
			return err
		}
		if n > 0 {
			return nil
		}
	}
	if s.tail {
		return io.EOF
	}
	s.tail = true
	s.w = copy(s.buf[:], deflateTail[:])
	return nil
}

// endsCleanly reports whether the source holds nothing the deflate stream
// did not read, once the stream has ended. A stream that ends at
// deflateTail's final block leaves nothing. One that ends with a final
// block of the peer's (RFC 7692 §7.2.3.4) leaves what followed it: the
// empty non-final stored block's header byte the RFC has the sender add, or
// nothing, then all of deflateTail. Anything else is data that no inflater
// would ever read.
func (s *inflateSource) endsCleanly() (bool, error) {
	var rest [len(deflateTail) + 2]byte
	n := 0
	for {
		if n == len(rest) {
			return false, nil
		}
		m, err := s.Read(rest[n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return false, err
		}
	}
	got := rest[:n]
	if len(got) == len(deflateTail)+1 && got[0] == 0 {
		got = got[1:]
	}
	return n == 0 || bytes.Equal(got, deflateTail[:]), nil
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
	if f.inf == nil {
		if takeover && f.windowLost {
			return 0, c.fail(StatusInternalError, "lost the decompression window after an interrupted read")
		}
		f.inf = inflaters.Get().(*inflater)
		f.inf.src = inflateSource{c: c}
		var dict []byte
		if takeover {
			dict = f.window[max(len(f.window)-flateWindow, 0):]
		}
		_ = f.inf.fr.(flate.Resetter).Reset(&f.inf.src, dict)
	}
	src := &f.inf.src
	src.ctx = ctx
	n, err := f.inf.fr.Read(p)
	if takeover && n > 0 && c.rd.err == nil {
		f.remember(p[:n])
	}
	if err == io.EOF {
		var clean bool
		clean, err = src.endsCleanly()
		if err == nil {
			putInflater(f.inf)
			f.inf = nil
			if !clean {
				return n, c.fail(StatusInvalidFramePayloadData, "compressed message has data past the end of its deflate stream")
			}
			return n, io.EOF
		}
	}
	switch {
	case err == nil:
		return n, nil
	case c.rd.err != nil:
		return n, c.rd.err
	case isTimeout(err):
		putInflater(f.inf)
		f.inf = nil
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

// This part of the file is a DEFLATE compressor (RFC 1951) for whole
// messages without context takeover, the default on both sides.
//
// compress/flate is made for streams. On a 1 KiB message at BestSpeed it
// spends more than half its time building the block's Huffman codes with a
// general length-limiting algorithm, three times what finding the matches
// takes, and it copies the message into its window first. Here the whole
// message is at hand: matches are found in it in place, with a hash of 4
// bytes to the last position they were seen at, as compress/flate's
// BestSpeed does, so the output is as small; codes are built from sorted
// frequencies with the in-place algorithm of Moffat and Katajainen, and
// the rare code too long for DEFLATE is shortened by moving codes between
// lengths until the code is complete again. Each block goes out in
// whichever form is smallest: with its own codes, with the fixed codes (as
// many short messages do), or stored.

// fastDeflate reports whether messages are compressed by a deflater rather
// than compress/flate: whole messages without context takeover, at
// BestSpeed or Huffman-only.
func (p *deflateParams) fastDeflate() bool {
	return !p.compressTakeover && (p.level == flate.BestSpeed || p.level == flate.HuffmanOnly)
}

const (
	maxMatch       = 258
	minMatch       = 4 // the matcher's; DEFLATE allows 3
	maxDistance    = 1 << 15
	maxHashBits    = 14
	blockInput     = 16 << 10 // input per block, bounding the tokens held; a last match may run past it
	numLitLen      = 286      // literal/length codes in use (RFC 1951 §3.2.5)
	numDist        = 30
	numCodeLen     = 19
	endOfBlock     = 256
	maxCodeBits    = 15
	maxCodeLenBits = 7
	matchToken     = 1 << 31
)

// A token is a literal byte, or matchToken | (length-3)<<16 | (distance-1).

// deflater is the state of compressing one message; they are pooled.
type deflater struct {
	table    []uint32 // hash of 4 bytes -> their last position + 1; 0: none
	tokens   []uint32
	litFreq  [numLitLen]int32
	distFreq [numDist]int32
	lit      huffmanCode
	dist     huffmanCode
	codeLen  huffmanCode                // the code for the code lengths (§3.2.7)
	lengths  [numLitLen + numDist]uint8 // both codes' lengths, as sent
	clOps    []uint16                   // code length codes, each symbol | extra bits << 5
	clFreq   [numCodeLen]int32
	syms     []uint32 // scratch for huffmanCode.build
	depths   []int32
	out      bitWriter
}

var deflaters = sync.Pool{New: func() any { return new(deflater) }}

// huffmanCode is a prefix code: per symbol its length and its bits,
// reversed, as DEFLATE writes them from the least significant bit.
type huffmanCode struct {
	lens  [numLitLen + 2]uint8 // room for the fixed code's 286 and 287
	codes [numLitLen + 2]uint16
}

// compress appends p, compressed as RFC 7692 §7.2.1 says, to dst: DEFLATE
// blocks, then an empty stored block without its final 00 00 ff ff.
// huffmanOnly sends no matches, for a peer that limits our window.
func (d *deflater) compress(dst, p []byte, huffmanOnly bool) []byte {
	d.out = bitWriter{out: dst}
	var table []uint32
	var shift uint
	if !huffmanOnly && len(p) >= 2*minMatch {
		// About one entry for each byte: few matches are lost to
		// collisions, and the table is cheap to clear for a short
		// message.
		hashBits := min(max(bits.Len(uint(len(p))), 8), maxHashBits)
		if cap(d.table) < 1<<hashBits {
			d.table = make([]uint32, 1<<hashBits)
		}
		table = d.table[:1<<hashBits]
		clear(table)
		shift = 32 - uint(hashBits)
	}
	for s := 0; s < len(p); {
		start := s
		d.tokens = d.tokens[:0]
		clear(d.litFreq[:])
		clear(d.distFreq[:])
		end := min(s+blockInput, len(p))
		if table == nil {
			d.literals(p[s:end])
			s = end
		} else {
			s = d.match(p, s, end, table, shift)
		}
		d.writeBlock(p[start:s])
	}
	// The empty stored block: its 3 header bits, then padding to a byte.
	d.out.write(0, 3)
	out := d.out.flush()
	d.out = bitWriter{} // the pool keeps no caller's buffer
	return out
}

// match tokenizes p[s:end], and as far past end as its last match goes,
// and returns where it stopped. Matches may start anywhere in p before s.
func (d *deflater) match(p []byte, s, end int, table []uint32, shift uint) int {
	const hashMul = 0x1e35a7bd
	lit := s // p[lit:s] are literals not yet emitted
	for s < end && s+minMatch <= len(p) {
		cur := binary.LittleEndian.Uint32(p[s:])
		h := cur * hashMul >> shift
		cand := int(table[h]) - 1
		table[h] = uint32(s + 1)
		if cand >= 0 && s-cand <= maxDistance && binary.LittleEndian.Uint32(p[cand:]) == cur {
			n := minMatch + matchLen(p[cand+minMatch:], p[s+minMatch:min(s+maxMatch, len(p))])
			d.literals(p[lit:s])
			d.addMatch(n, s-cand)
			s += n
			lit = s
			if s+minMatch <= len(p) {
				// Remember the position before the next one too,
				// for the runs that JSON and text are full of.
				table[binary.LittleEndian.Uint32(p[s-1:])*hashMul>>shift] = uint32(s)
			}
			continue
		}
		// Step faster the longer nothing has matched, so that
		// incompressible data costs little.
		s += 1 + (s-lit)>>5
	}
	s = min(max(s, end), len(p))
	d.literals(p[lit:s])
	return s
}

// matchLen returns how many bytes at the start of b equal those of a,
// which is at least as long.
func matchLen(a, b []byte) int {
	n := 0
	for ; n+8 <= len(b); n += 8 {
		if x := binary.LittleEndian.Uint64(a[n:]) ^ binary.LittleEndian.Uint64(b[n:]); x != 0 {
			return n + bits.TrailingZeros64(x)>>3
		}
	}
	for ; n < len(b) && a[n] == b[n]; n++ {
	}
	return n
}

func (d *deflater) literals(lits []byte) {
	for _, b := range lits {
		d.tokens = append(d.tokens, uint32(b))
		d.litFreq[b]++
	}
}

func (d *deflater) addMatch(length, distance int) {
	d.tokens = append(d.tokens, matchToken|uint32(length-3)<<16|uint32(distance-1))
	d.litFreq[257+int(lengthCode[length-3])]++
	d.distFreq[distCode(uint32(distance-1))]++
}

// distCode returns the code of distance d+1 (RFC 1951 §3.2.5).
func distCode(d uint32) uint32 {
	if d < 4 {
		return d
	}
	top := uint32(bits.Len32(d)) - 1
	return 2*top + d>>(top-1)&1
}

// The extra bits of length codes 257 to 285 and distance codes, their
// base values, and the length code of each length less 3.
var (
	lengthExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	lengthBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	distExtra   = [numDist]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	distBase    = [numDist]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	lengthCode  = func() (t [256]uint8) {
		for c := range 28 {
			for i := range 1 << lengthExtra[c] {
				t[int(lengthBase[c])-3+i] = uint8(c)
			}
		}
		t[255] = 28 // 258 has a code of its own
		return t
	}()
)

// The fixed codes of RFC 1951 §3.2.6.
var fixedLit, fixedDist = func() (lit, dist huffmanCode) {
	for i := range len(lit.lens) {
		switch {
		case i < 144:
			lit.lens[i] = 8
		case i < 256:
			lit.lens[i] = 9
		case i < 280:
			lit.lens[i] = 7
		default:
			lit.lens[i] = 8
		}
	}
	// All 288 codes: the 9-bit ones come after all the 8-bit ones.
	lit.assign(len(lit.lens), &[maxCodeBits + 1]int32{7: 24, 8: 152, 9: 112})
	for i := range numDist {
		dist.lens[i] = 5
	}
	dist.assign(numDist, &[maxCodeBits + 1]int32{5: numDist})
	return lit, dist
}()

// writeBlock writes the block of the tokens, which encode input.
func (d *deflater) writeBlock(input []byte) {
	d.litFreq[endOfBlock] = 1
	d.lit.build(d, d.litFreq[:], maxCodeBits)
	if d.dist.build(d, d.distFreq[:], maxCodeBits) == 0 {
		// No matches. Like compress/flate, send one distance
		// code of one bit (RFC 1951 §3.2.7): decoders that
		// reject an empty code accept that.
		d.dist.lens[0] = 1
		d.dist.codes[0] = 0
	}
	numLit, numD := d.codeLengths()
	d.codeLen.build(d, d.clFreq[:], maxCodeLenBits)
	numCL := numCodeLen
	for numCL > 4 && d.codeLen.lens[codeLenOrder[numCL-1]] == 0 {
		numCL--
	}

	// The size of the block in each form.
	fixedBits, dynBits := 3, 3+5+5+4+3*numCL
	for c, n := range d.clFreq {
		dynBits += int(n) * int(d.codeLen.lens[c]+codeLenExtra[c])
	}
	for c, n := range d.litFreq[:endOfBlock+1] {
		fixedBits += int(n) * int(fixedLit.lens[c])
		dynBits += int(n) * int(d.lit.lens[c])
	}
	for c, n := range d.litFreq[endOfBlock+1:] {
		fixedBits += int(n) * int(fixedLit.lens[endOfBlock+1+c]+lengthExtra[c])
		dynBits += int(n) * int(d.lit.lens[endOfBlock+1+c]+lengthExtra[c])
	}
	for c, n := range d.distFreq {
		fixedBits += int(n) * int(5+distExtra[c])
		dynBits += int(n) * int(d.dist.lens[c]+distExtra[c])
	}
	storedBits := 3 + int(-(d.out.n+3)&7) + 32 + 8*len(input)

	switch w := &d.out; {
	case storedBits <= min(fixedBits, dynBits):
		w.write(0, 3)
		w.n += -w.n & 7 // to a byte boundary
		w.flush()
		n := uint16(len(input))
		w.out = append(w.out, byte(n), byte(n>>8), byte(^n), byte(^n>>8))
		w.out = append(w.out, input...)
	case fixedBits <= dynBits:
		w.write(1<<1, 3)
		d.writeTokens(&fixedLit, &fixedDist)
	default:
		w.write(2<<1, 3)
		w.write(uint64(numLit-257), 5)
		w.write(uint64(numD-1), 5)
		w.write(uint64(numCL-4), 4)
		for _, c := range codeLenOrder[:numCL] {
			w.write(uint64(d.codeLen.lens[c]), 3)
		}
		for _, op := range d.clOps {
			c := op & 31
			w.write(uint64(d.codeLen.codes[c])|uint64(op>>5)<<d.codeLen.lens[c], uint(d.codeLen.lens[c])+uint(codeLenExtra[c]))
		}
		d.writeTokens(&d.lit, &d.dist)
	}
}

// codeLenOrder is the order in which the code length code's lengths are
// sent, and codeLenExtra the extra bits of its symbols 16, 17, 18.
var (
	codeLenOrder = [numCodeLen]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
	codeLenExtra = [numCodeLen]uint8{16: 2, 17: 3, 18: 7}
)

// codeLengths run-length encodes the lengths of the literal/length and
// distance codes with the code length alphabet (RFC 1951 §3.2.7), into
// clOps and clFreq, and returns how many of each code's lengths are sent.
func (d *deflater) codeLengths() (numLit, numD int) {
	numLit, numD = numLitLen, numDist
	for numLit > 257 && d.lit.lens[numLit-1] == 0 {
		numLit--
	}
	for numD > 1 && d.dist.lens[numD-1] == 0 {
		numD--
	}
	// One sequence: runs may go on from one code into the other.
	seq := append(append(d.lengths[:0], d.lit.lens[:numLit]...), d.dist.lens[:numD]...)
	clear(d.clFreq[:])
	d.clOps = d.clOps[:0]
	op := func(sym, extra int) {
		d.clOps = append(d.clOps, uint16(sym|extra<<5))
		d.clFreq[sym]++
	}
	for i := 0; i < len(seq); {
		l := seq[i]
		run := 1
		for i+run < len(seq) && seq[i+run] == l {
			run++
		}
		i += run
		if l == 0 {
			for ; run >= 11; run -= min(run, 138) {
				op(18, min(run, 138)-11)
			}
			if run >= 3 {
				op(17, run-3)
				run = 0
			}
		} else {
			op(int(l), 0)
			run--
			for ; run >= 3; run -= min(run, 6) {
				op(16, min(run, 6)-3)
			}
		}
		for ; run > 0; run-- {
			op(int(l), 0)
		}
	}
	return numLit, numD
}

// writeTokens writes the block's tokens and its end with the given codes.
func (d *deflater) writeTokens(lit, dist *huffmanCode) {
	// The writer's state in locals, which stay in registers.
	acc, n, out := d.out.bits, d.out.n, d.out.out
	for _, t := range d.tokens {
		if t < matchToken {
			acc |= uint64(lit.codes[t]) << n
			n += uint(lit.lens[t])
		} else {
			l := t >> 16 & 0xff
			lc := lengthCode[l]
			sym := 257 + int(lc)
			acc |= (uint64(lit.codes[sym]) | uint64(l+3-uint32(lengthBase[lc]))<<lit.lens[sym]) << n
			n += uint(lit.lens[sym]) + uint(lengthExtra[lc])
			if n >= 32 {
				out = binary.LittleEndian.AppendUint32(out, uint32(acc))
				acc >>= 32
				n -= 32
			}
			dd := t & 0xffff
			dc := distCode(dd)
			acc |= (uint64(dist.codes[dc]) | uint64(dd+1-uint32(distBase[dc]))<<dist.lens[dc]) << n
			n += uint(dist.lens[dc]) + uint(distExtra[dc])
		}
		if n >= 32 {
			out = binary.LittleEndian.AppendUint32(out, uint32(acc))
			acc >>= 32
			n -= 32
		}
	}
	d.out = bitWriter{out: out, bits: acc, n: n}
	d.out.write(uint64(lit.codes[endOfBlock]), uint(lit.lens[endOfBlock]))
}

// build makes h a Huffman code for the symbols with the frequencies freq,
// none longer than maxBits, and returns how many symbols it codes.
func (h *huffmanCode) build(d *deflater, freq []int32, maxBits int) int {
	clear(h.lens[:len(freq)])
	syms := d.syms[:0]
	for s, f := range freq {
		if f != 0 {
			syms = append(syms, uint32(f)<<9|uint32(s))
		}
	}
	d.syms = syms
	n := len(syms)
	switch n {
	case 0:
		return 0
	case 1:
		// A code of one symbol still takes a bit; giving a second
		// symbol the other bit keeps the code complete, which zlib
		// requires of the code length code.
		s, other := syms[0]&511, 0
		if s == 0 {
			other = 1
		}
		h.lens[s], h.lens[other] = 1, 1
		h.assign(len(freq), &[maxCodeBits + 1]int32{1: 2})
		return 1
	}
	slices.Sort(syms)

	// Moffat and Katajainen, "In-Place Calculation of Minimum-Redundancy
	// Codes" (1995): a holds the frequencies in ascending order and ends
	// up holding the code lengths, in descending order.
	if cap(d.depths) < n {
		d.depths = make([]int32, len(h.lens))
	}
	a := d.depths[:n]
	for i, s := range syms {
		a[i] = int32(s >> 9)
	}
	// Build the tree: a[next] becomes the weight of internal node next,
	// and a[root] the parent of the internal nodes already paired.
	a[0] += a[1]
	root, leaf := 0, 2
	for next := 1; next < n-1; next++ {
		if leaf >= n || a[root] < a[leaf] {
			a[next] = a[root]
			a[root] = int32(next)
			root++
		} else {
			a[next] = a[leaf]
			leaf++
		}
		if leaf >= n || (root < next && a[root] < a[leaf]) {
			a[next] += a[root]
			a[root] = int32(next)
			root++
		} else {
			a[next] += a[leaf]
			leaf++
		}
	}
	// The depth of each internal node, from the root down.
	a[n-2] = 0
	for next := n - 3; next >= 0; next-- {
		a[next] = a[a[next]] + 1
	}
	// The depth of each leaf, the shallowest to the most frequent.
	avail, used, depth := 1, 0, int32(0)
	r, next := n-2, n-1
	for avail > 0 {
		for r >= 0 && a[r] == depth {
			used++
			r--
		}
		for ; avail > used; avail-- {
			a[next] = depth
			next--
		}
		avail, used, depth = 2*used, 0, depth+1
	}

	// Count the codes of each length, cutting any too long to maxBits,
	// then, while the lengths ask for more codes than maxBits allows,
	// trade a code of maxBits for lengthening the longest shorter one.
	var count [maxCodeBits + 1]int32
	over := false
	for _, l := range a {
		if int(l) > maxBits {
			l, over = int32(maxBits), true
		}
		count[l]++
	}
	if over {
		total := 0
		for l := 1; l <= maxBits; l++ {
			total += int(count[l]) << (maxBits - l)
		}
		for ; total > 1<<maxBits; total-- {
			count[maxBits]--
			for l := maxBits - 1; l > 0; l-- {
				if count[l] > 0 {
					count[l]--
					count[l+1] += 2
					break
				}
			}
		}
	}
	// The shortest codes to the most frequent symbols.
	i := n
	for l := 1; l <= maxBits; l++ {
		for range count[l] {
			i--
			h.lens[syms[i]&511] = uint8(l)
		}
	}
	h.assign(len(freq), &count)
	return n
}

// assign gives the first n symbols the canonical codes of their lengths
// (RFC 1951 §3.2.2), of which there are count[l] of length l.
func (h *huffmanCode) assign(n int, count *[maxCodeBits + 1]int32) {
	var next [maxCodeBits + 1]uint16
	code := uint16(0)
	for l := 2; l <= maxCodeBits; l++ {
		code = (code + uint16(count[l-1])) << 1
		next[l] = code
	}
	for s, l := range h.lens[:n] {
		if l != 0 {
			h.codes[s] = bits.Reverse16(next[l]) >> (16 - l)
			next[l]++
		}
	}
}

// bitWriter appends bits to out from the least significant bit of each
// byte, as DEFLATE packs them.
type bitWriter struct {
	out  []byte
	bits uint64
	n    uint // bits held, fewer than 32 between writes
}

// write writes the low nb bits of b; nb is at most 32.
func (w *bitWriter) write(b uint64, nb uint) {
	w.bits |= b << w.n
	w.n += nb
	if w.n >= 32 {
		w.out = binary.LittleEndian.AppendUint32(w.out, uint32(w.bits))
		w.bits >>= 32
		w.n -= 32
	}
}

// flush writes the bits held, padded with zeros to a byte, and returns out.
func (w *bitWriter) flush() []byte {
	for ; w.n > 0; w.n -= min(w.n, 8) {
		w.out = append(w.out, byte(w.bits))
		w.bits >>= 8
	}
	return w.out
}
