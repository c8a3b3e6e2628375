package websocket

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
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

// BenchmarkHandshake measures whole handshakes over loopback TCP, as a
// client sees them: connect, upgrade, Close frames both ways, the
// server's TCP close. It runs behind net/http and behind Serve, so that
// the two front doors compare in the same run; allocations are the
// server's and this client's together.
func BenchmarkHandshake(b *testing.B) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, nil)
		if err != nil {
			return
		}
		go func() {
			defer c.CloseNow()
			_, _, _ = c.Read(context.Background()) // the client's Close
		}()
	})
	fronts := []struct {
		name  string
		serve func(net.Listener) error
	}{
		{"net-http", func(ln net.Listener) error { return http.Serve(ln, handler) }},
		{"Serve", func(ln net.Listener) error { return Serve(ln, handler) }},
	}
	request := []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	closeFrame := AppendHeader(nil, Header{Fin: true, Opcode: OpClose, Masked: true, Length: 2})
	closeFrame = append(closeFrame, 0x03, 0xe8) // 1000, masked with the zero key
	for _, front := range fronts {
		b.Run(front.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- front.serve(ln) }()
			defer func() { ln.Close(); <-served }()
			buf := make([]byte, 4096)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := oneHandshake(ln.Addr().String(), request, closeFrame, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// oneHandshake opens a connection to addr, upgrades it with request,
// sends closeFrame and reads until the server closes the connection.
func oneHandshake(addr string, request, closeFrame, buf []byte) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(request); err != nil {
		return err
	}
	n := 0
	for !bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
		m, err := nc.Read(buf[n:])
		if err != nil {
			return fmt.Errorf("reading the 101: %w", err)
		}
		n += m
	}
	if !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 101 ")) {
		return fmt.Errorf("answered %q", buf[:n])
	}
	if _, err := nc.Write(closeFrame); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, nc); err != nil {
		return fmt.Errorf("waiting for the server to close: %w", err)
	}
	return nil
}
