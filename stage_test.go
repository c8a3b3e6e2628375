package websocket

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

// pageAligned returns n bytes starting on a 4 KiB boundary.
func pageAligned(n int) []byte {
	b := make([]byte, n+pageSize)
	skip := (pageSize - pageOffset(b)) & (pageSize - 1)
	return b[skip : skip+n]
}

// TestSlowInPlace pins down when a server stages a large frame: on amd64,
// when the kernel would copy the payload to within 63 bytes past where it
// lies, modulo the page size, for a header that starts a page of the
// socket's buffer or any of the next 63 bytes.
func TestSlowInPlace(t *testing.T) {
	page := pageAligned(8192)
	cases := []struct {
		header, offset int
		slow           bool
	}{
		{10, 0, true},     // a page-aligned payload behind a 64-bit length
		{4, 0, true},      // behind a 16-bit length
		{4, 4096, true},   // the next page
		{10, 4095, true},  // 11 bytes apart across the page
		{10, 10, true},    // in line with a header at the page's start, 1 byte apart past it
		{10, 73, true},    // 63 bytes apart for a header 63 bytes in
		{10, 74, false},   // 64 bytes apart
		{10, 2048, false}, // half a page
		{10, 4000, false},
	}
	for _, tc := range cases {
		want := tc.slow && runtime.GOARCH == "amd64"
		if got := slowInPlace(tc.header, page[tc.offset:]); got != want {
			t.Errorf("header %d, payload at page offset %d: slowInPlace = %v, want %v", tc.header, tc.offset, got, want)
		}
	}
}

// A prepared message's frame, written whole, starts mid-page like a staged
// one once it is larger than a write buffer.
func TestNewWire(t *testing.T) {
	for _, n := range []int{100, writeBufferSize, 18000, 20000, 200000} {
		w := newWire(n)
		if len(w) != 0 || cap(w) != n {
			t.Fatalf("newWire(%d): len %d, cap %d", n, len(w), cap(w))
		}
		if n > writeBufferSize && pageOffset(w) != stageOffset {
			t.Errorf("newWire(%d) starts at page offset %d, want %d", n, pageOffset(w), stageOffset)
		}
	}
}

// TestWriteStagedFrames writes frames of sizes around the staging area's
// chunks and its 1 MiB per system call, from payloads that are staged and
// ones written in place, and reads them off the wire with the frame codec:
// each must arrive as one frame, byte for byte, masked from its key when a
// client sent it (RFC 6455 §5.2, §5.3).
func TestWriteStagedFrames(t *testing.T) {
	sizes := []int{
		writeBufferSize - 10, writeBufferSize + 1,
		chunkSize - 10, chunkSize, chunkSize + 1,
		stageChunks*chunkSize - 10, stageChunks*chunkSize + 1,
		2*stageChunks*chunkSize + 12345,
	}
	src := pageAligned(4<<20 + 8192)
	for i := range src {
		src[i] = byte(i*7 + i>>11)
	}
	for _, server := range []bool{true, false} {
		for _, size := range sizes {
			for _, offset := range []int{0, 10, 4} {
				name := fmt.Sprintf("server=%v/%d/offset%d", server, size, offset)
				t.Run(name, func(t *testing.T) {
					a, b := tcpPair(t)
					checkStagedFrame(t, server, a, b, src[offset:offset+size])
				})
			}
		}
	}
	// A peer that starts reading late fills the socket's buffers, so the
	// kernel takes part of a round and the rest goes out in place or, from
	// a client, re-staged from wherever the kernel stopped: mid-word of the
	// masking key, as likely as not.
	for _, server := range []bool{true, false} {
		size := 3*stageChunks*chunkSize + 4097
		t.Run(fmt.Sprintf("late reader/server=%v/%d", server, size), func(t *testing.T) {
			a, b := tcpPair(t)
			// Small buffers, which the kernel does not grow.
			_ = a.(*net.TCPConn).SetWriteBuffer(64 << 10)
			_ = b.(*net.TCPConn).SetReadBuffer(64 << 10)
			checkStagedFrameAfter(t, server, a, b, src[:size], 200*time.Millisecond)
		})
	}
	// Over TLS the socket is not the Conn's to write to directly: a
	// server frame goes out in place through tls.Conn, a client's staged
	// one chunk by chunk.
	cert, pool := SelfSignedCert(t, "duplex staging test")
	for _, server := range []bool{true, false} {
		size := 2*stageChunks*chunkSize + 12345
		t.Run(fmt.Sprintf("tls/server=%v/%d", server, size), func(t *testing.T) {
			a, b := tcpPair(t)
			ta := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{cert}})
			tb := tls.Client(b, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
			if server {
				checkStagedFrame(t, server, ta, tb, src[:size])
			} else {
				checkStagedFrame(t, server, tb, ta, src[:size])
			}
		})
	}
}

// checkStagedFrame writes payload as one binary message from a Conn on a,
// server or client, and reads it off b with the frame codec.
func checkStagedFrame(t *testing.T, server bool, a, b net.Conn, payload []byte) {
	t.Helper()
	checkStagedFrameAfter(t, server, a, b, payload, 0)
}

// checkStagedFrameAfter is checkStagedFrame with the reading begun after a
// delay.
func checkStagedFrameAfter(t *testing.T, server bool, a, b net.Conn, payload []byte, delay time.Duration) {
	t.Helper()
	defer b.Close()
	c := newConn(a, server, nil, "", extensions{})
	defer c.CloseNow()
	done := make(chan error, 1)
	go func() { done <- c.Write(context.Background(), MessageBinary, payload) }()
	time.Sleep(delay)

	_ = b.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(b)
	h, err := ReadHeader(r)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Fin || h.Opcode != OpBinary || h.Length != int64(len(payload)) || h.Masked == server {
		t.Fatalf("header %+v: want one final binary frame of %d bytes, masked only from a client", h, len(payload))
	}
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatal(err)
	}
	if h.Masked {
		Mask(got, h.MaskKey)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("payload differs from byte %d", firstDifference(got, payload))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r.Buffered() != 0 {
		t.Fatalf("%d bytes after the frame", r.Buffered())
	}
}

func firstDifference(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestWriteStagedTimeout: a staged frame that the peer stops reading fails
// at the write deadline with the connection closed, since part of the frame
// is on the wire, and the next write says so.
func TestWriteStagedTimeout(t *testing.T) {
	for _, server := range []bool{true, false} {
		t.Run(fmt.Sprint("server=", server), func(t *testing.T) {
			a, b := tcpPair(t)
			defer b.Close() // never read
			c := newConn(a, server, nil, "", extensions{})
			defer c.CloseNow()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			err := c.Write(ctx, MessageBinary, pageAligned(32<<20))
			if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Write = %v, want a deadline error", err)
			}
			if err := c.Write(context.Background(), MessageText, []byte("after")); err == nil {
				t.Fatal("a write after a frame cut short succeeded")
			}
		})
	}
}

// BenchmarkWriteLarge measures a server answering with large messages over
// loopback, each read whole and acknowledged before the next, from a
// page-aligned buffer: "staged" as Write sends it, "in-place" with its
// payload written where it lies, as Write did before staging.
func BenchmarkWriteLarge(b *testing.B) {
	for _, n := range []int{64 << 10, 1 << 20} {
		for _, mode := range []string{"staged", "in-place"} {
			b.Run(fmt.Sprintf("%d/%s", n, mode), func(b *testing.B) {
				server, client := pipePair(b, extensions{}, extensions{})
				client.SetReadLimit(int64(n))
				payload := pageAligned(n)
				if mode == "in-place" {
					stageSlowWrites = false
					defer func() { stageSlowWrites = true }()
				}
				ctx := context.Background()
				go func() {
					buf := make([]byte, n)
					for {
						_, r, err := client.Reader(ctx)
						if err != nil {
							return
						}
						if _, err := io.ReadFull(r, buf); err != nil {
							return
						}
						if client.Write(ctx, MessageBinary, buf[:1]) != nil {
							return
						}
					}
				}()
				var ack [1]byte
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if err := server.Write(ctx, MessageBinary, payload); err != nil {
						b.Fatal(err)
					}
					if _, r, err := server.Reader(ctx); err != nil {
						b.Fatal(err)
					} else if _, err := io.ReadFull(r, ack[:]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// handedOver is set by a goroutine before it sends a large message, and
// read by the goroutine that receives the message.
var handedOver int

// Under the race detector, what a goroutine did before it wrote a large
// message happens before what the peer does after reading it, however the
// frame went out: in place, staged, or staged without waiting. The writes
// must be the ones the detector watches (see detector_on.go), or a correct
// program is reported racing.
func TestLargeWriteOrdersWriterBeforeReader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		server  bool
		staging bool
	}{
		{"server in place", true, false},
		{"server staged", true, true},
		{"client staged", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stageSlowWrites = tc.staging
			defer func() { stageSlowWrites = true }()
			a, b := tcpPair(t)
			defer b.Close()
			c := newConn(a, tc.server, nil, "", extensions{})
			defer c.CloseNow()
			payload := pageAligned(200_000)
			wire := len(AppendHeader(nil, Header{Fin: true, Opcode: OpBinary, Length: int64(len(payload)), Masked: !tc.server})) + len(payload)
			for i := 1; i <= 3; i++ {
				done := make(chan error, 1)
				go func() {
					handedOver = i
					done <- c.Write(context.Background(), MessageBinary, payload)
				}()
				if _, err := io.ReadFull(b, make([]byte, wire)); err != nil {
					t.Fatal(err)
				}
				if handedOver != i {
					t.Fatalf("message %d: the write before it was not seen after it", i)
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
