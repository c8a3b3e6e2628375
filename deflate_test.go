package websocket

import (
	"bytes"
	"compress/flate"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
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
