package websocket

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// wireConn is a net.Conn that reads from a fixed byte string and discards
// writes: a peer whose bytes a fuzzer chooses.
type wireConn struct{ r *bytes.Reader }

func (w *wireConn) Read(p []byte) (int, error)       { return w.r.Read(p) }
func (w *wireConn) Write(p []byte) (int, error)      { return len(p), nil }
func (w *wireConn) Close() error                     { return nil }
func (w *wireConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (w *wireConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (w *wireConn) SetDeadline(time.Time) error      { return nil }
func (w *wireConn) SetReadDeadline(time.Time) error  { return nil }
func (w *wireConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzReadMessages feeds arbitrary bytes to a server connection, with and
// without permessage-deflate, and checks what reads deliver: never more
// than the read limit, text always valid UTF-8, and no panic.
func FuzzReadMessages(f *testing.F) {
	for _, fr := range rfcFrames {
		if len(fr.wire) < 300 {
			f.Add(fr.wire, false)
		}
	}
	f.Add(unhex("c1 87 00 00 00 00 f2 48 cd c9 c9 07 00"), true)
	f.Add(unhex("41 83 00 00 00 00 f2 48 cd 80 84 00 00 00 00 c9 c9 07 00"), true)
	f.Add(unhex("01 82 00 00 00 00 ce 00 89 80 00 00 00 00 80 81 00 00 00 00 ba"), false)
	f.Fuzz(func(t *testing.T, wire []byte, deflate bool) {
		var ext extensions
		if deflate {
			ext.deflate = &deflateParams{level: flate.BestSpeed, inflateTakeover: true}
		}
		c := newConn(&wireConn{bytes.NewReader(wire)}, true, nil, "", ext)
		const limit = 4096
		c.SetReadLimit(limit)
		for i := 0; i < 100; i++ {
			typ, msg, err := c.Read(context.Background())
			if err != nil {
				return
			}
			if len(msg) > limit {
				t.Fatalf("read %d bytes past the limit of %d", len(msg), limit)
			}
			if typ == MessageText && !utf8.Valid(msg) {
				t.Fatalf("delivered invalid UTF-8 %q", msg)
			}
		}
	})
}

// FuzzAcceptRequest checks the server's handshake parsing on arbitrary
// requests: it never panics, and a request it accepts has a valid key.
func FuzzAcceptRequest(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nSec-WebSocket-Protocol: chat, superchat\r\nOrigin: http://a\r\n\r\n")
	f.Add("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket, h2c\r\nConnection: keep-alive, upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=\"10\", x\r\n\r\n")
	f.Fuzz(func(t *testing.T, raw string) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return
		}
		herr := checkUpgradeRequest(r)
		if herr == nil && !validChallengeKey(r.Header.Get("Sec-WebSocket-Key")) {
			t.Fatal("accepted a request with an invalid key")
		}
		_ = checkOrigin(r, []string{"*.example.com"})
		_ = selectSubprotocol(r.Header, []string{"chat"})
		for _, opts := range []*CompressionOptions{{}, {ContextTakeover: true}} {
			ext, resp := acceptExtensions(r.Header, opts)
			if (ext.deflate != nil) != (resp != "") {
				t.Fatalf("agreement %v with response %q", ext.deflate, resp)
			}
			// What we answer, a client of ours accepts.
			if resp != "" {
				h := http.Header{"Sec-Websocket-Extensions": {resp}}
				if _, err := acceptedExtensions(h, &CompressionOptions{ContextTakeover: true}); err != nil && opts.ContextTakeover {
					t.Fatalf("our response %q is refused by our client: %v", resp, err)
				}
			}
		}
	})
}

// FuzzDialResponse checks the client's handshake response checks on
// arbitrary responses.
func FuzzDialResponse(f *testing.F) {
	f.Add("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12\r\n\r\n")
	f.Fuzz(func(t *testing.T, raw string) {
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
		if err != nil {
			return
		}
		opts := &DialOptions{Subprotocols: []string{"chat"}, Compression: &CompressionOptions{}}
		sub, _, herr := checkResponse(resp, "dGhlIHNhbXBsZSBub25jZQ==", opts)
		if herr == nil && resp.StatusCode != 101 {
			t.Fatalf("accepted status %d", resp.StatusCode)
		}
		if herr == nil && sub != "" && sub != "chat" {
			t.Fatalf("accepted subprotocol %q that was not offered", sub)
		}
	})
}

// FuzzClosePayload checks close payload parsing: what it accepts re-encodes
// to the same bytes.
func FuzzClosePayload(f *testing.F) {
	f.Add([]byte{0x03, 0xe8})
	f.Add([]byte{0x0f, 0xa0, 'b', 'y', 'e'})
	f.Add([]byte{0x03})
	f.Fuzz(func(t *testing.T, p []byte) {
		ce, code, err := parseClosePayload(p)
		if err != nil {
			if code != StatusProtocolError && code != StatusInvalidFramePayloadData {
				t.Fatalf("failure status %v", code)
			}
			return
		}
		if re := appendClosePayload(nil, ce.Code, ce.Reason); !bytes.Equal(re, p) {
			t.Fatalf("re-encoded % x, was % x", re, p)
		}
	})
}

// FuzzExtensionHeader drives the permessage-deflate negotiation with
// arbitrary Sec-WebSocket-Extensions values: offer as a client's request
// header for acceptExtensions, answer as a server's response header for
// acceptedExtensions (a newline in either splits it into several header
// lines). Neither panics, and whatever our server answers an offer, our
// client accepts back, agreeing on who keeps a compression context.
func FuzzExtensionHeader(f *testing.F) {
	// RFC 7692 §5, §7.1 and §7.1.2.x examples, RFC 6455 §9.1's, and our
	// own offers.
	for _, seed := range [][2]string{
		{"permessage-deflate", "permessage-deflate"},
		{"permessage-deflate; client_max_window_bits", "permessage-deflate; client_max_window_bits=10"},
		{"permessage-deflate; client_max_window_bits; server_max_window_bits=10, permessage-deflate; client_max_window_bits",
			"permessage-deflate; server_max_window_bits=10"},
		{"permessage-deflate; server_max_window_bits=10, permessage-deflate", "permessage-deflate; server_max_window_bits=10"},
		{"permessage-deflate; server_no_context_takeover", "permessage-deflate; server_no_context_takeover"},
		{"permessage-deflate; client_no_context_takeover", "permessage-deflate; client_no_context_takeover"},
		{"permessage-deflate; client_max_window_bits=\"10\"", "permessage-deflate; server_max_window_bits=\"8\""},
		{"permessage-deflate; server_max_window_bits=16, permessage-deflate; server_max_window_bits=08", "x-webkit-deflate-frame"},
		{"foo, bar; baz=2", "mux; max-channels=4; flow-control, deflate-stream"},
		{"permessage-deflate; x=\"a,b\\\"\"; y\npermessage-deflate", "permessage-deflate; client_no_context_takeover=1"},
		{offerExtensions(&CompressionOptions{}), "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		{offerExtensions(&CompressionOptions{ContextTakeover: true}), "permessage-deflate, permessage-deflate"},
	} {
		f.Add(seed[0], seed[1])
	}
	header := func(v string) http.Header {
		return http.Header{"Sec-Websocket-Extensions": strings.Split(v, "\n")}
	}
	clients := []*CompressionOptions{{}, {ContextTakeover: true}}
	f.Fuzz(func(t *testing.T, offer, answer string) {
		for _, client := range clients {
			ext, err := acceptedExtensions(header(answer), client)
			if err != nil || ext.deflate == nil {
				continue
			}
			if !client.ContextTakeover && (ext.deflate.compressTakeover || ext.deflate.inflateTakeover) {
				t.Fatalf("client without context takeover accepted %q with %+v", answer, *ext.deflate)
			}
			if bits := windowBits(answer, "client_max_window_bits"); bits < 15 && ext.deflate.level != flate.HuffmanOnly {
				t.Fatalf("client accepted a %d-bit window in %q but compresses at level %d", bits, answer, ext.deflate.level)
			}
		}
		for _, server := range []*CompressionOptions{nil, {}, {ContextTakeover: true}, {Level: 9, Threshold: -1}} {
			ext, resp := acceptExtensions(header(offer), server)
			if (ext.deflate != nil) != (resp != "") {
				t.Fatalf("server %+v: agreement %v with response %q", server, ext.deflate, resp)
			}
			if ext.deflate == nil {
				continue
			}
			if server == nil {
				t.Fatalf("server without compression agreed to %q", resp)
			}
			for _, client := range clients {
				if !client.ContextTakeover && ext.deflate.compressTakeover {
					// This client always offers server_no_context_takeover,
					// which a server honours; this offer did not.
					continue
				}
				got, err := acceptedExtensions(header(resp), client)
				if err != nil {
					t.Fatalf("server %+v answered %q with %q, which our client %+v refuses: %v", server, offer, resp, client, err)
				}
				c, s := got.deflate, ext.deflate
				if c == nil {
					t.Fatalf("client %+v accepted %q without agreeing on compression", client, resp)
				}
				// Whoever compresses with a context, the other side keeps
				// the window it refers to.
				if s.compressTakeover != c.inflateTakeover || (c.compressTakeover && !s.inflateTakeover) {
					t.Fatalf("offer %q, answer %q: server %+v, client %+v", offer, resp, *s, *c)
				}
				if bits := windowBits(resp, "server_max_window_bits"); bits < 15 && s.level != flate.HuffmanOnly {
					t.Fatalf("server promised a %d-bit window in %q but compresses at level %d", bits, resp, s.level)
				}
			}
		}
	})
}

// windowBits returns the value of the window bits parameter name in the
// single permessage-deflate response v, or 15 if it has none.
func windowBits(v, name string) int {
	exts := parseExtensions(http.Header{"Sec-Websocket-Extensions": strings.Split(v, "\n")})
	if len(exts) != 1 {
		return 15
	}
	for _, p := range exts[0].params {
		if n, err := strconv.Atoi(p.value); p.name == name && err == nil {
			return n
		}
	}
	return 15
}
