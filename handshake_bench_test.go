package websocket

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// hijackWriter is an http.ResponseWriter whose Hijack hands out the same
// loopback connection every time, as net/http would: with its deadlines
// cleared and its own buffers. It lets a benchmark run Accept in a loop
// without paying for a TCP connection per iteration.
type hijackWriter struct {
	header http.Header
	nc     net.Conn
	brw    *bufio.ReadWriter
}

func (w *hijackWriter) Header() http.Header         { return w.header }
func (w *hijackWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *hijackWriter) WriteHeader(int)             {}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.brw.Writer.Reset(w.nc)
	return w.nc, w.brw, nil
}

// BenchmarkAccept measures Accept alone on a loopback connection whose
// peer discards the 101 responses: what the server spends on an opening
// handshake beyond net/http's reading of the request and the TCP setup.
func BenchmarkAccept(b *testing.B) {
	requests := []struct{ name, req string }{
		{"minimal", "GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"},
		{"browser", "GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" +
			"Origin: https://example.com\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
			"Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"},
	}
	for _, tc := range requests {
		b.Run(tc.name, func(b *testing.B) {
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(tc.req)))
			if err != nil {
				b.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err == nil {
					_, _ = io.Copy(io.Discard, c)
					c.Close()
				}
			}()
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			w := &hijackWriter{
				header: http.Header{},
				nc:     nc,
				brw:    bufio.NewReadWriter(bufio.NewReader(nc), bufio.NewWriter(nc)),
			}
			opts := &AcceptOptions{Subprotocols: []string{"superchat"}}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := Accept(w, r, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
