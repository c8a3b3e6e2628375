//go:build unix

// These tests are of reads from a socket itself (netio_unix.go), which only
// Unix systems have.

package websocket

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// clientFrame encodes a masked frame as a client sends it.
func clientFrame(dst []byte, fin bool, op Opcode, payload []byte) []byte {
	key := [4]byte{0x5a, 0x13, 0xc4, 0x7e}
	dst = AppendHeader(dst, Header{Fin: fin, Opcode: op, Masked: true, MaskKey: key, Length: int64(len(payload))})
	start := len(dst)
	dst = append(dst, payload...)
	Mask(dst[start:], key)
	return dst
}

// unixPair returns the two ends of a Unix stream socket pair. A write to
// one end is in the other's receive queue when it returns, which makes what
// a single read finds there certain.
func unixPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Skipf("no Unix socket pair here: %v", err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns[0], conns[1]
}

// A frame's payload read into a caller's buffer sized to what is left of it
// brings what follows the frame along in the same system call: the next
// frame's header need not wait for a read of its own.
func TestFrameEndReadBringsNextFrame(t *testing.T) {
	if runtime.GOOS != "linux" || raceEnabled {
		t.Skip("the frame's end and what follows are read with one readv(2) on Linux only, and not under the race detector")
	}
	a, b := unixPair(t)
	server := newConn(a, true, nil, "", extensions{})
	defer server.CloseNow()
	if server.in.raw == nil {
		t.Fatal("a Unix socket should be read through its raw connection")
	}

	// 40,000 bytes: what is left of the payload after the first read,
	// which fills the read buffer, is still more than the buffer holds,
	// so it is read straight into the caller's buffer.
	big := bytes.Repeat([]byte("0123456789abcdef"), 2500)
	next := clientFrame(nil, true, OpText, []byte("next"))
	stream := append(clientFrame(nil, true, OpBinary, big), next...)
	if _, err := b.Write(stream); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	typ, r, err := server.Reader(ctx)
	if err != nil || typ != MessageBinary {
		t.Fatalf("Reader: %v, %v", typ, err)
	}
	got := make([]byte, len(big))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("the large frame's payload came out changed")
	}
	if n := server.in.buffered(); n != len(next) {
		t.Fatalf("after the large frame's last read, %d bytes are buffered; want the next frame's %d", n, len(next))
	}
	typ, p, err := server.Read(ctx)
	if err != nil || typ != MessageText || string(p) != "next" {
		t.Fatalf("next message: %v %q %v", typ, p, err)
	}
}

// Frames of every size, fragmented and not, with pings between fragments,
// written in pieces of random size and read into buffers of the exact size
// and of others, come out as they went in, wherever the reads fall.
func TestReadsAcrossFrameBoundaries(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	sizes := []int{0, 1, 125, 126, 16<<10 - 14, 16 << 10, 16<<10 + 1, 65535, 65536, 100_000}
	for range 20 {
		sizes = append(sizes, rng.Intn(200_000))
	}

	type message struct {
		payload []byte
		frames  int
	}
	var msgs []message
	var stream []byte
	for i, n := range sizes {
		m := message{payload: make([]byte, n), frames: 1 + i%3}
		rng.Read(m.payload)
		msgs = append(msgs, m)
		rest := m.payload
		for f := range m.frames {
			part := rest
			if f < m.frames-1 {
				part = rest[:len(rest)/2]
			}
			rest = rest[len(part):]
			op := OpBinary
			if f > 0 {
				op = OpContinuation
				stream = clientFrame(stream, true, OpPing, []byte("between"))
			}
			stream = clientFrame(stream, f == m.frames-1, op, part)
		}
	}

	for _, transport := range []string{"tcp", "unix"} {
		t.Run(transport, func(t *testing.T) {
			var a, b net.Conn
			if transport == "tcp" {
				a, b = tcpPair(t)
			} else {
				a, b = unixPair(t)
			}
			server := newConn(a, true, nil, "", extensions{})
			defer server.CloseNow()
			server.SetReadLimit(1 << 20)

			// The peer writes the stream in random pieces and throws
			// away the pongs.
			go io.Copy(io.Discard, b)
			go func() {
				rng := rand.New(rand.NewSource(2))
				for s := stream; len(s) > 0; {
					n := min(len(s), 1+rng.Intn(40_000))
					if _, err := b.Write(s[:n]); err != nil {
						return
					}
					s = s[n:]
				}
			}()

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for i, m := range msgs {
				_, r, err := server.Reader(ctx)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				// Exact buffers, one byte more, and small reads in turn.
				var got []byte
				switch i % 3 {
				case 0:
					got = make([]byte, len(m.payload))
					_, err = io.ReadFull(r, got)
				case 1:
					got = make([]byte, len(m.payload)+1)
					var n int
					n, err = io.ReadFull(r, got)
					got = got[:n]
					if err == io.ErrUnexpectedEOF {
						err = nil
					}
				case 2:
					got, err = io.ReadAll(io.LimitReader(r, 1<<20))
				}
				if err != nil {
					t.Fatalf("message %d (%d bytes in %d frames): %v", i, len(m.payload), m.frames, err)
				}
				if !bytes.Equal(got, m.payload) {
					t.Fatalf("message %d (%d bytes in %d frames) came out changed", i, len(m.payload), m.frames)
				}
			}
		})
	}
}

// writtenBeforeSend is set by a goroutine before it sends the end of a
// frame, and read by the goroutine that reads the frame.
var writtenBeforeSend int

// Under the race detector, what a goroutine did before writing to a socket
// happens before what the reader does after reading it, however the frame's
// end is read: the reads must be the ones the detector watches (see
// readInto), or a correct program is reported racing.
func TestSocketOrdersWriterBeforeReader(t *testing.T) {
	a, b := unixPair(t)
	server := newConn(a, true, nil, "", extensions{})
	defer server.CloseNow()
	payload := make([]byte, 40_000)
	frame := clientFrame(nil, true, OpBinary, payload)
	split := len(frame) - len(payload) + 100
	if _, err := b.Write(frame[:split]); err != nil {
		t.Fatal(err)
	}
	_, r, err := server.Reader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(payload))
	n, err := r.Read(got)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(10 * time.Millisecond) // let the reader wait for the rest
		writtenBeforeSend = 42
		b.Write(frame[split:])
	}()
	if _, err := io.ReadFull(r, got[n:]); err != nil {
		t.Fatal(err)
	}
	if writtenBeforeSend != 42 {
		t.Fatal("the write before the frame's end was not seen after it")
	}
}

// A write that fails because the peer reset the connection leaves what the
// peer sent for readers (TestFaultPeerGoneLeavesWhatItSent); but where
// nobody reads any more (an AwaitMessage function that returns at a failed
// write, say) the connection still closes: with keepalive on, when its
// check finds no pong; without, when a closing handshake would have timed
// out.
func TestPeerGoneWithoutReaderCloses(t *testing.T) {
	t.Parallel()
	for _, keepAlive := range []bool{true, false} {
		t.Run(fmt.Sprint("keepalive=", keepAlive), func(t *testing.T) {
			t.Parallel()
			a, b := tcpPair(t)
			c := newConn(a, true, nil, "", extensions{})
			defer c.CloseNow()
			b.(*net.TCPConn).SetLinger(0)
			b.Close()
			time.Sleep(20 * time.Millisecond) // for the reset to arrive
			within := closeHandshakeTimeout
			if keepAlive {
				within = 100 * time.Millisecond
				c.SetKeepAlive(within, within)
			} else if err := c.Write(context.Background(), MessageText, []byte("x")); !peerGone(err) {
				t.Fatalf("write: %v, want it to fail for the reset", err)
			}
			select {
			case <-c.closed:
			case <-time.After(within + 2*time.Second):
				t.Fatalf("connection still open %v after the write failed", within+2*time.Second)
			}
		})
	}
}
