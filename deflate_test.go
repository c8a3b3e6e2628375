package websocket

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// pipePair returns a server and a client Conn joined by a loopback TCP
// connection, with ext agreed on both sides.
func pipePair(t testing.TB, serverExt, clientExt extensions) (server, client *Conn) {
	t.Helper()
	sc, cc := tcpPair(t)
	server = newConn(sc, true, nil, "", serverExt)
	client = newConn(cc, false, nil, "", clientExt)
	t.Cleanup(func() { server.CloseNow(); client.CloseNow() })
	return server, client
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, _ := ln.Accept()
		accepted <- nc
	}()
	b, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return <-accepted, b
}

// RFC 7692 §7.2.3.1: "Hello" compressed, in one frame and in two.
func TestRFC7692HelloVectors(t *testing.T) {
	noTakeover := extensions{deflate: &deflateParams{level: flate.BestSpeed}}
	cases := []struct {
		name string
		wire []byte
	}{
		{"§7.2.3.1 one compressed frame", unhex("c1 07 f2 48 cd c9 c9 07 00")},
		{"§7.2.3.1 two fragments", unhex("41 03 f2 48 cd 80 04 c9 c9 07 00")},
		{"§7.2.3.3 no-compression block", unhex("c1 0b 00 05 00 fa ff 48 65 6c 6c 6f 00")},
		{"§7.2.3.5 two deflate blocks", unhex("c1 0d f2 48 05 00 00 00 ff ff ca c9 c9 07 00")},
		{"§7.2.3.4 block with BFINAL set", unhex("c1 08 f3 48 cd c9 c9 07 00 00")},
		{"block with BFINAL set, without §7.2.3.4's empty block", unhex("c1 07 f3 48 cd c9 c9 07 00")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, client := pipePair(t, noTakeover, noTakeover)
			client.in.init(bytes.NewReader(c.wire), nil)
			typ, msg, err := client.Read(context.Background())
			if err != nil || typ != MessageText || string(msg) != "Hello" {
				t.Fatalf("got %v %q, %v", typ, msg, err)
			}
		})
	}
}

// RFC 7692 §7.2.3.2: with context takeover, the second "Hello" refers back
// to the first.
func TestRFC7692SharedWindow(t *testing.T) {
	takeover := extensions{deflate: &deflateParams{level: flate.BestSpeed, inflateTakeover: true}}
	_, client := pipePair(t, takeover, takeover)
	client.in.init(bytes.NewReader(unhex("c1 07 f2 48 cd c9 c9 07 00 c1 05 f2 00 11 00 00")), nil)
	for i := 0; i < 2; i++ {
		if _, msg, err := client.Read(context.Background()); err != nil || string(msg) != "Hello" {
			t.Fatalf("message %d: %q, %v", i, msg, err)
		}
	}
}

// Our compressor produces the RFC's bytes for "Hello" at the levels whose
// output the RFC shows.
func TestCompressHelloMatchesRFC(t *testing.T) {
	var fs flateState
	p := &deflateParams{level: flate.BestSpeed}
	fw := fs.begin(p, nil)
	fw.Write([]byte("Hello"))
	got, err := fs.finish(p, fw)
	if err != nil {
		t.Fatal(err)
	}
	// BestSpeed may choose a different but valid encoding; check it
	// inflates back after the tail is restored.
	r := flate.NewReader(io.MultiReader(bytes.NewReader(got), bytes.NewReader(deflateTail[:])))
	out, err := io.ReadAll(r)
	fs.end()
	if err != nil || string(out) != "Hello" {
		t.Fatalf("inflated %q, %v from % x", out, err, got)
	}
}

func TestNegotiationServer(t *testing.T) {
	cases := []struct {
		name     string
		offer    string
		opts     *CompressionOptions
		response string // "" means declined
		huffman  bool
	}{
		{"no compression configured", "permessage-deflate", nil, "", false},
		{"plain offer", "permessage-deflate", &CompressionOptions{},
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover", false},
		{"Chromium's offer", "permessage-deflate; client_max_window_bits", &CompressionOptions{},
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover", false},
		{"takeover kept", "permessage-deflate; client_max_window_bits", &CompressionOptions{ContextTakeover: true},
			"permessage-deflate", false},
		{"client asks server_no_context_takeover", "permessage-deflate; server_no_context_takeover", &CompressionOptions{ContextTakeover: true},
			"permessage-deflate; server_no_context_takeover", false},
		{"client offers client_no_context_takeover", "permessage-deflate; client_no_context_takeover", &CompressionOptions{ContextTakeover: true},
			"permessage-deflate; client_no_context_takeover", false},
		{"server_max_window_bits=10 means Huffman-only", "permessage-deflate; server_max_window_bits=10", &CompressionOptions{},
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10", true},
		{"server_max_window_bits=15", "permessage-deflate; server_max_window_bits=15", &CompressionOptions{},
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15", false},
		{"quoted value", `permessage-deflate; server_max_window_bits="12"`, &CompressionOptions{},
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12", true},
		{"client_max_window_bits=9", "permessage-deflate; client_max_window_bits=9", &CompressionOptions{},
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover", false},
		{"case and spaces", "Permessage-Deflate ;  Client_Max_Window_Bits", &CompressionOptions{},
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover", false},
		{"unknown parameter declined", "permessage-deflate; foo=1", &CompressionOptions{}, "", false},
		{"duplicate parameter declined", "permessage-deflate; server_no_context_takeover; server_no_context_takeover", &CompressionOptions{}, "", false},
		{"server_max_window_bits=7 declined", "permessage-deflate; server_max_window_bits=7", &CompressionOptions{}, "", false},
		{"server_max_window_bits=16 declined", "permessage-deflate; server_max_window_bits=16", &CompressionOptions{}, "", false},
		{"server_max_window_bits without value declined", "permessage-deflate; server_max_window_bits", &CompressionOptions{}, "", false},
		{"client_max_window_bits=x declined", "permessage-deflate; client_max_window_bits=x", &CompressionOptions{}, "", false},
		// RFC 7692 §7.1.2.1 and §7.1.2.2: "without leading zeroes".
		{"server_max_window_bits=010 declined", "permessage-deflate; server_max_window_bits=010", &CompressionOptions{}, "", false},
		{"server_max_window_bits=09 declined", "permessage-deflate; server_max_window_bits=09", &CompressionOptions{}, "", false},
		{"client_max_window_bits=0015 declined", "permessage-deflate; client_max_window_bits=0015", &CompressionOptions{}, "", false},
		{"server_max_window_bits=+9 declined", "permessage-deflate; server_max_window_bits=+9", &CompressionOptions{}, "", false},
		{"value on no_context_takeover declined", "permessage-deflate; client_no_context_takeover=1", &CompressionOptions{}, "", false},
		{"bad first offer, good second", "permessage-deflate; foo, permessage-deflate; client_max_window_bits", &CompressionOptions{},
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover", false},
		{"other extension ignored", "x-webkit-deflate-frame, permessage-deflate", &CompressionOptions{},
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover", false},
		{"only other extensions", "x-webkit-deflate-frame", &CompressionOptions{}, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ext, resp := acceptExtensions(http.Header{"Sec-Websocket-Extensions": {c.offer}}, c.opts)
			if resp != c.response {
				t.Fatalf("response %q, want %q", resp, c.response)
			}
			if (ext.deflate != nil) != (c.response != "") {
				t.Fatalf("agreement %+v for response %q", ext.deflate, resp)
			}
			if ext.deflate != nil && (ext.deflate.level == flate.HuffmanOnly) != c.huffman {
				t.Fatalf("level %d, huffman-only wanted: %v", ext.deflate.level, c.huffman)
			}
		})
	}
}

func TestNegotiationClient(t *testing.T) {
	cases := []struct {
		name     string
		opts     *CompressionOptions
		response string
		ok       bool
		agreed   bool
		huffman  bool
	}{
		{"declined", &CompressionOptions{}, "", true, false, false},
		{"accepted", &CompressionOptions{}, "permessage-deflate; server_no_context_takeover; client_no_context_takeover", true, true, false},
		{"python's server_max_window_bits=12", &CompressionOptions{}, "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12", true, true, false},
		{"client_max_window_bits=12 means Huffman-only", &CompressionOptions{ContextTakeover: true}, "permessage-deflate; client_max_window_bits=12", true, true, true},
		{"server ignored our server_no_context_takeover", &CompressionOptions{}, "permessage-deflate", false, false, false},
		{"takeover", &CompressionOptions{ContextTakeover: true}, "permessage-deflate", true, true, false},
		{"not offered", nil, "permessage-deflate", false, false, false},
		{"unknown extension", &CompressionOptions{}, "x-foo", false, false, false},
		{"two extensions", &CompressionOptions{}, "permessage-deflate; server_no_context_takeover, permessage-deflate; server_no_context_takeover", false, false, false},
		{"unknown parameter", &CompressionOptions{}, "permessage-deflate; server_no_context_takeover; foo", false, false, false},
		{"bad window", &CompressionOptions{}, "permessage-deflate; server_no_context_takeover; server_max_window_bits=20", false, false, false},
		{"window with a leading zero", &CompressionOptions{}, "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=010", false, false, false},
		{"client window with a leading zero", &CompressionOptions{ContextTakeover: true}, "permessage-deflate; client_max_window_bits=09", false, false, false},
		{"client_max_window_bits without value", &CompressionOptions{ContextTakeover: true}, "permessage-deflate; client_max_window_bits", false, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			if c.response != "" {
				h.Set("Sec-WebSocket-Extensions", c.response)
			}
			ext, err := acceptedExtensions(h, c.opts)
			if (err == nil) != c.ok {
				t.Fatalf("err = %v, want ok=%v", err, c.ok)
			}
			if (ext.deflate != nil) != c.agreed {
				t.Fatalf("agreed = %v", ext.deflate != nil)
			}
			if ext.deflate != nil && (ext.deflate.level == flate.HuffmanOnly) != c.huffman {
				t.Fatalf("huffman-only = %v", ext.deflate.level == flate.HuffmanOnly)
			}
		})
	}
}

// A decompression bomb: a few KiB that inflate to far more than the read
// limit. The reader must stop at the limit with 1009, whatever the
// compressed size, holding no more than the limit in memory.
func TestDecompressionBomb(t *testing.T) {
	ext := extensions{deflate: &deflateParams{level: flate.BestCompression}}
	server, client := pipePair(t, ext, ext)
	server.SetReadLimit(1 << 20)
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, flate.BestCompression)
	zeros := make([]byte, 1<<20)
	for i := 0; i < 64; i++ { // 64 MiB of zeros
		fw.Write(zeros)
	}
	fw.Flush()
	payload := bytes.TrimSuffix(buf.Bytes(), deflateTail[:4])
	if len(payload) > 128<<10 {
		t.Fatalf("bomb is %d bytes", len(payload))
	}
	go client.writeFrame(context.Background(), Header{Fin: true, Rsv1: true, Opcode: OpBinary}, payload)
	_, _, err := server.Read(context.Background())
	if CloseStatus(err) != StatusMessageTooBig {
		t.Fatalf("err = %v, want status 1009", err)
	}
}

// Corrupt deflate data fails the connection with 1007; RSV1 on a
// continuation frame with 1002; a stream that ends early, with data after
// its own final block, with 1007.
func TestCorruptCompressedData(t *testing.T) {
	ext := extensions{deflate: &deflateParams{level: flate.BestSpeed}}
	var final bytes.Buffer
	fw, _ := flate.NewWriter(&final, flate.BestSpeed)
	fw.Write([]byte("Hello"))
	fw.Close() // a final block: the message's stream ends here
	pastEnd := append(final.Bytes(), 0xf2, 0x48)
	cases := []struct {
		name string
		wire []byte
		code StatusCode
	}{
		{"invalid block type", unhex("c2 03 ff ff ff"), StatusInvalidFramePayloadData},
		{"RSV1 on a continuation", unhex("42 03 f2 48 cd c0 04 c9 c9 07 00"), StatusProtocolError},
		{"data past the final block", append([]byte{0xc2, byte(len(pastEnd))}, pastEnd...), StatusInvalidFramePayloadData},
		{"more than §7.2.3.4's empty block past the final block", unhex("c1 09 f3 48 cd c9 c9 07 00 00 00"), StatusInvalidFramePayloadData},
	}
	for _, c := range cases {
		_, client := pipePair(t, ext, ext)
		client.in.init(bytes.NewReader(c.wire), nil)
		_, msg, err := client.Read(context.Background())
		if CloseStatus(err) != c.code {
			t.Errorf("%s: got %q, %v; want status %v", c.name, msg, err, c.code)
		}
	}
}

// A compressed message may be written streamed, with context takeover, and
// read back in pieces.
func TestStreamedCompressionRoundTrip(t *testing.T) {
	for _, takeover := range []bool{false, true} {
		ext := extensions{deflate: &deflateParams{level: flate.BestSpeed, compressTakeover: takeover, inflateTakeover: takeover}}
		server, client := pipePair(t, ext, ext)
		server.SetReadLimit(8 << 20)
		msg := []byte(strings.Repeat("the quick brown fox jumps over the lazy dog ", 100000))
		done := make(chan error, 1)
		go func() {
			for i := 0; i < 3; i++ {
				w, err := client.Writer(context.Background(), MessageText)
				if err != nil {
					done <- err
					return
				}
				for rest := msg; len(rest) > 0; rest = rest[min(len(rest), 7777):] {
					w.Write(rest[:min(len(rest), 7777)])
				}
				if err := w.Close(); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		for i := 0; i < 3; i++ {
			_, got, err := server.Read(context.Background())
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("takeover=%v message %d: %d bytes, %v", takeover, i, len(got), err)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// Huffman-only compression, used when the peer bounds our window, round
// trips.
func TestHuffmanOnlyRoundTrip(t *testing.T) {
	ext := extensions{deflate: &deflateParams{level: flate.HuffmanOnly}}
	server, client := pipePair(t, ext, ext)
	msg := []byte(strings.Repeat("abcabcabc", 1000))
	go client.Write(context.Background(), MessageText, msg)
	_, got, err := server.Read(context.Background())
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
}

// inflateAll decompresses a message's payload as a peer would: with the
// flush marker that the sender cut put back (RFC 7692 §7.2.2).
func inflateAll(payload []byte) ([]byte, error) {
	return io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(payload), bytes.NewReader(deflateTail[:]))))
}

// deflaterInputs are messages that take the compressor down each of its
// paths: empty and tiny, stored, fixed and dynamic blocks, every match
// length, distances up to the window and past it, several blocks, and
// skewed frequencies that make Huffman codes too long for DEFLATE.
func deflaterInputs() map[string][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	in := map[string][]byte{}
	for _, n := range []int{0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 127, 128, 258, 259, 1024, blockInput - 1, blockInput, blockInput + 1, 65535, 65536, 200 << 10} {
		in[fmt.Sprintf("json/%d", n)] = jsonMessage(n)
		in[fmt.Sprintf("random/%d", n)] = random(n)
		in[fmt.Sprintf("zeros/%d", n)] = make([]byte, n)
	}
	for _, period := range []int{1, 2, 3, 4, 5, 257, 258, 259, 1000, maxDistance - 1, maxDistance, maxDistance + 1, 40000} {
		unit := random(period)
		in[fmt.Sprintf("period/%d", period)] = bytes.Repeat(unit, 3+(100<<10)/period)
	}
	// Byte i appears Fib(i+2) times, 1, 2, 3, 5..., in one block: with
	// the end of block's 1, a Huffman code for the literals would have
	// codes of 18 bits.
	var skewed []byte
	for i, f, g := 0, 1, 2; i < 18; i, f, g = i+1, g, f+g {
		skewed = append(skewed, bytes.Repeat([]byte{byte('a' + i)}, f)...)
	}
	rng.Shuffle(len(skewed), func(i, j int) { skewed[i], skewed[j] = skewed[j], skewed[i] })
	in["skewed"] = skewed
	in["text"] = []byte(strings.Repeat("the quick brown fox jumps over the lazy dog ", 2000))
	return in
}

// The compressor's output inflates back to its input with compress/flate,
// with and without matches, reusing one deflater as the pool does.
func TestDeflaterRoundTrip(t *testing.T) {
	d := new(deflater)
	for name, msg := range deflaterInputs() {
		for _, huffmanOnly := range []bool{false, true} {
			got := d.compress(nil, msg, huffmanOnly)
			out, err := inflateAll(got)
			if err != nil || !bytes.Equal(out, msg) {
				t.Fatalf("%s, huffman-only %v: inflated %d bytes of %d, %v", name, huffmanOnly, len(out), len(msg), err)
			}
			// Stored blocks bound the size: 5 bytes per block, and one
			// for the final empty block's header.
			if limit := len(msg) + 5*(len(msg)/blockInput+1) + 1; len(got) > limit {
				t.Errorf("%s, huffman-only %v: %d bytes compressed to %d", name, huffmanOnly, len(msg), len(got))
			}
		}
	}
}

// The empty message compresses to the single byte RFC 7692 §7.2.3.6 shows.
func TestDeflaterEmptyMessage(t *testing.T) {
	if got := new(deflater).compress(nil, nil, false); !bytes.Equal(got, []byte{0x00}) {
		t.Fatalf("empty message compressed to % x", got)
	}
}

// Huffman codes are complete (Kraft's sum is exactly 1, so that zlib
// accepts them) and no longer than the limit, however skewed the
// frequencies, with one symbol or many.
func TestHuffmanCodeLengths(t *testing.T) {
	fib := make([]int32, numLitLen)
	for i := range fib {
		fib[i] = 1
		if i >= 2 {
			fib[i] = min(fib[i-1]+fib[i-2], 1<<20)
		}
	}
	uniform := make([]int32, numLitLen)
	for i := range uniform {
		uniform[i] = 7
	}
	cases := []struct {
		name    string
		freq    []int32
		maxBits int
	}{
		{"one symbol", []int32{0, 0, 5}, maxCodeBits},
		{"symbol 0 alone", []int32{9, 0, 0}, maxCodeBits},
		{"last code length symbol alone", append(make([]int32, numCodeLen-1), 3), maxCodeLenBits},
		{"two", []int32{1, 0, 1000}, maxCodeBits},
		{"uniform", uniform, maxCodeBits},
		{"fibonacci literals", fib, maxCodeBits},
		{"fibonacci code lengths", fib[:numCodeLen], maxCodeLenBits},
		{"fibonacci distances", fib[:numDist], maxCodeBits},
	}
	d := new(deflater)
	for _, c := range cases {
		var h huffmanCode
		h.build(d, c.freq, c.maxBits)
		kraft := 0.0
		for s, f := range c.freq {
			l := int(h.lens[s])
			if f != 0 && l == 0 {
				t.Errorf("%s: symbol %d has no code", c.name, s)
			}
			if l > c.maxBits {
				t.Errorf("%s: symbol %d has a code of %d bits, over %d", c.name, s, l, c.maxBits)
			}
			if l != 0 {
				kraft += 1 / float64(int(1)<<l)
			}
		}
		if kraft != 1 {
			t.Errorf("%s: Kraft sum %v, want 1", c.name, kraft)
		}
	}
}

// FuzzDeflater checks that whatever the message, the compressor's output
// inflates back to it.
func FuzzDeflater(f *testing.F) {
	f.Add([]byte("Hello"), false)
	f.Add(jsonMessage(1024), false)
	f.Add(bytes.Repeat([]byte("ab"), 300), true)
	d := new(deflater)
	f.Fuzz(func(t *testing.T, msg []byte, huffmanOnly bool) {
		got := d.compress(nil, msg, huffmanOnly)
		out, err := inflateAll(got)
		if err != nil || !bytes.Equal(out, msg) {
			t.Fatalf("inflated %q, %v; want %q", out, err, msg)
		}
	})
}

// Reading a compressed message to its end notes, as reading any message
// does, that the next one is already buffered, so that answers written
// meanwhile are held and sent together (coalesce.go).
func TestCompressedReadNotesBufferedInput(t *testing.T) {
	ext := extensions{deflate: &deflateParams{level: flate.BestSpeed}}
	server, client := pipePair(t, ext, ext)
	if server.in.raw == nil {
		t.Skip("answers are held only on sockets that can be written without blocking")
	}
	msg := jsonMessage(1024)
	frame := maskedFrame(Header{Fin: true, Rsv1: true, Opcode: OpText}, rawDeflate(msg, flate.BestSpeed))
	if _, err := client.nc.Write(append(frame, frame...)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 2 {
		_, got, err := server.Read(ctx)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("message %d: %d bytes, %v", i, len(got), err)
		}
		if i == 0 && !server.batching.Load() {
			// The second message may have arrived late; it did
			// not if the first read left it buffered.
			if server.in.buffered() > 0 {
				t.Fatal("next message buffered, but writes are not held for it")
			}
			t.Log("second message arrived separately; nothing to hold for")
		}
	}
}

// Whole messages are compressed by the deflater where it applies, and
// inflate back on the peer, in both roles.
func TestFastDeflateRoundTrip(t *testing.T) {
	for _, level := range []int{flate.BestSpeed, flate.HuffmanOnly} {
		ext := extensions{deflate: &deflateParams{level: level}}
		if !ext.deflate.fastDeflate() {
			t.Fatalf("level %d does not use the deflater", level)
		}
		server, client := pipePair(t, ext, ext)
		server.SetReadLimit(1 << 20)
		client.SetReadLimit(1 << 20)
		ctx := context.Background()
		for _, msg := range [][]byte{nil, []byte("x"), jsonMessage(1024), jsonMessage(100 << 10)} {
			for _, dir := range [][2]*Conn{{client, server}, {server, client}} {
				done := make(chan error, 1)
				go func() { done <- dir[0].Write(ctx, MessageBinary, msg) }()
				_, got, err := dir[1].Read(ctx)
				if err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("level %d, %d bytes: read %d, %v", level, len(msg), len(got), err)
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// A read that times out in the middle of a compressed message leaves the
// connection usable: the rest of that message is dropped and the next one
// reads whole. With context takeover the next one cannot be decompressed
// without what was lost, and the connection fails with 1011.
func TestCompressedReadTimeout(t *testing.T) {
	for _, takeover := range []bool{false, true} {
		ext := extensions{deflate: &deflateParams{level: flate.BestSpeed, inflateTakeover: takeover}}
		server, client := pipePair(t, ext, ext)
		msg := jsonMessage(4096)
		frame := maskedFrame(Header{Fin: true, Rsv1: true, Opcode: OpText}, rawDeflate(msg, flate.BestSpeed))
		if _, err := client.nc.Write(frame[:len(frame)/2]); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, r, err := server.Reader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || len(got) >= len(msg) {
			t.Fatalf("takeover=%v: read %d bytes, %v; want part of the message and a timeout", takeover, len(got), err)
		}
		if _, err := r.Read(make([]byte, 10)); err == nil {
			t.Fatalf("takeover=%v: the message read on after its decompression was cut short", takeover)
		}
		if _, err := client.nc.Write(append(frame[len(frame)/2:], frame...)); err != nil {
			t.Fatal(err)
		}
		if takeover {
			// A peer that reads answers our Close, ending the wait
			// for it.
			go client.Read(context.Background())
		}
		_, got, err = server.Read(context.Background())
		if takeover {
			if CloseStatus(err) != StatusInternalError {
				t.Fatalf("takeover: next message %d bytes, %v; want status 1011", len(got), err)
			}
		} else if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("next message: %d bytes, %v", len(got), err)
		}
	}
}

// Without a limit to meet, codes are optimal: they cost as many bits as
// Huffman's algorithm, run here the plain way, says the symbols need.
func TestHuffmanCodesAreOptimal(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	d := new(deflater)
	for range 1000 {
		freq := make([]int32, 2+rng.IntN(numDist-2))
		for i := range freq {
			freq[i] = int32(rng.IntN(50))
		}
		// The cost of a Huffman code is the sum of the weights of the
		// nodes that pairing the two lightest makes.
		var weights []int64
		for _, f := range freq {
			if f != 0 {
				weights = append(weights, int64(f))
			}
		}
		if len(weights) < 2 {
			continue
		}
		var want int64
		for len(weights) > 1 {
			slices.Sort(weights)
			pair := weights[0] + weights[1]
			want += pair
			weights = append(weights[2:], pair)
		}
		var h huffmanCode
		h.build(d, freq, maxCodeBits)
		var got int64
		for s, f := range freq {
			got += int64(f) * int64(h.lens[s])
		}
		if got != want {
			t.Fatalf("frequencies %v: code lengths %v cost %d bits, want %d", freq, h.lens[:len(freq)], got, want)
		}
	}
}

// A closed connection keeps no memory for messages: the read buffer, and
// the compressor and window that context takeover keeps (over a MiB), go
// back to the pools as it closes, not when the application lets go of it.
func TestClosedConnLetsGoOfItsMemory(t *testing.T) {
	p := &deflateParams{compressTakeover: true, inflateTakeover: true, level: 1}
	server, client := pipePair(t, extensions{p}, extensions{p})
	ctx := context.Background()
	msg := bytes.Repeat([]byte("a message with context takeover "), 100)
	for _, c := range []*Conn{client, server} {
		if err := c.Write(ctx, MessageBinary, msg); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []*Conn{server, client} {
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatal(err)
		}
		if c.flate.fw == nil || c.flate.window == nil {
			t.Fatal("no compressor or window kept while open: the test tests nothing")
		}
	}
	server.CloseNow()
	if err := client.Close(StatusNormalClosure, ""); err == nil {
		t.Error("Close of a connection the peer dropped succeeded")
	}
	for _, c := range []*Conn{server, client} {
		if c.in.big != nil || c.flate.fw != nil || c.flate.window != nil || c.flate.inf != nil {
			t.Errorf("server %v: closed, still holds read buffer %v, compressor %v, window %v, inflater %v",
				c.server, c.in.big != nil, c.flate.fw != nil, c.flate.window != nil, c.flate.inf != nil)
		}
		if err := c.Write(ctx, MessageBinary, msg); err == nil {
			t.Errorf("server %v: write after close succeeded", c.server)
		}
		if c.flate.fw != nil {
			t.Errorf("server %v: a write after close made a compressor", c.server)
		}
	}
}

// A connection closed while its reader is in the middle of a message (the
// application's CloseNow between two reads; keepalive, the end of an
// HTTP/2 request or an orphaned peer do the same) ends that read too: the
// rest of the message reads as the closed connection, never as bytes from
// further on in the stream under a clean io.EOF (over TLS, whose Conn keeps
// what it decrypted), nor as the peer's invalid deflate data (a fresh
// inflater given the middle of a stream).
func TestCloseMidMessageEndsTheRead(t *testing.T) {
	takeover := &deflateParams{compressTakeover: true, inflateTakeover: true, level: 1}
	plain := &deflateParams{level: 1}
	cert, pool := SelfSignedCert(t, "duplex close test")
	for _, tc := range []struct {
		name string
		ext  extensions
		tls  bool
	}{
		{"compressed", extensions{plain}, false},
		{"compressed with takeover", extensions{takeover}, false},
		{"TLS", extensions{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tcpPair(t)
			if tc.tls {
				ta := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{cert}})
				tb := tls.Client(b, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
				handshake := make(chan error, 1)
				go func() { handshake <- ta.Handshake() }()
				if err := tb.Handshake(); err != nil {
					t.Fatal(err)
				}
				if err := <-handshake; err != nil {
					t.Fatal(err)
				}
				a, b = ta, tb
			}
			server := newConn(a, true, nil, "", tc.ext)
			client := newConn(b, false, nil, "", tc.ext)
			defer server.CloseNow()
			defer client.CloseNow()
			ctx := context.Background()
			// 64 KiB that compresses to a few hundred bytes; over TLS
			// 200 bytes, so that tls.Conn decrypts both messages at once.
			msg := bytes.Repeat([]byte("0123456789abcdef"), 1<<12)
			if tc.tls {
				msg = msg[:200]
			}
			for range 2 {
				if err := server.Write(ctx, MessageBinary, msg); err != nil {
					t.Fatal(err)
				}
			}
			_, r, err := client.Reader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			first := make([]byte, 10)
			if _, err := io.ReadFull(r, first); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond) // everything in the client's socket
			client.CloseNow()
			rest, err := io.ReadAll(r)
			if !errors.Is(err, net.ErrClosed) || CloseStatus(err) != StatusAbnormalClosure {
				t.Errorf("the rest of the message: %d bytes, %v; want the closed connection (1006)", len(rest), err)
			}
			if _, _, err := client.Read(ctx); !errors.Is(err, net.ErrClosed) {
				t.Errorf("next message: %v, want the closed connection", err)
			}
			if client.in.big != nil || (client.flate != nil && client.flate.inf != nil) {
				t.Error("reads after the close took pooled memory back")
			}
		})
	}
}

// Turning compression back on after the close takes no compressor for the
// closed Conn to keep.
func TestSetCompressionAfterClose(t *testing.T) {
	p := &deflateParams{compressTakeover: true, inflateTakeover: true, level: 1}
	server, _ := pipePair(t, extensions{p}, extensions{p})
	server.CloseNow()
	server.SetCompression(true)
	if err := server.Write(context.Background(), MessageBinary, bytes.Repeat([]byte("x"), 1000)); err == nil {
		t.Error("write after close succeeded")
	}
	if server.flate.fw != nil {
		t.Error("a closed Conn holds a compressor again")
	}
}
