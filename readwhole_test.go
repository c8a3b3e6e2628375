package websocket

import (
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"strings"
	"testing"
)

// Read returns each message whole, byte for byte, whichever way it came:
// one frame of any size around the sizes Read treats differently, many
// frames, or compressed; and text with multi-byte characters across the
// chunks it gathers in.
func TestReadWhole(t *testing.T) {
	sizes := []int{0, 1, wholeDirectMax - 1, wholeDirectMax, wholeDirectMax + 1,
		3*chunkSize + 7, 64*chunkSize + 1}
	modes := []struct {
		name string
		ext  extensions
		// streamed sends the message through Writer in writes of 10,000
		// bytes, so that it arrives as several frames.
		streamed bool
	}{
		{"one frame", extensions{}, false},
		{"fragmented", extensions{}, true},
		{"compressed", extensions{deflate: &deflateParams{level: flate.BestSpeed}}, false},
	}
	for _, mode := range modes {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("%s/%d", mode.name, size), func(t *testing.T) {
				server, client := pipePair(t, mode.ext, mode.ext)
				server.SetReadLimit(8 << 20)
				ctx := context.Background()
				// "é" is two bytes, so chunks of 64 KiB cut characters.
				msg := []byte(strings.Repeat("é-", size/3+1)[:size])
				if size%3 == 1 { // do not end in half a character
					msg[size-1] = '.'
				}
				typ := MessageText
				if !isValidUTF8(msg) {
					t.Fatal("the test message is not UTF-8")
				}
				done := make(chan error, 1)
				go func() { done <- writeInPieces(ctx, client, typ, msg, mode.streamed) }()
				gotType, got, err := server.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if gotType != typ || !bytes.Equal(got, msg) {
					t.Fatalf("got %v of %d bytes, want %v of %d; first difference at %d", gotType, len(got), typ, len(msg), firstDifference(got, msg))
				}
				if cap(got) != len(got) {
					t.Errorf("cap %d for %d bytes: the slice is not of the message's size", cap(got), len(got))
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func isValidUTF8(b []byte) bool {
	var v utf8Validator
	return v.write(b) && v.complete()
}

// writeInPieces writes msg as one message, through Writer in pieces of
// 10,000 bytes if streamed.
func writeInPieces(ctx context.Context, c *Conn, typ MessageType, msg []byte, streamed bool) error {
	if !streamed {
		return c.Write(ctx, typ, msg)
	}
	w, err := c.Writer(ctx, typ)
	if err != nil {
		return err
	}
	for len(msg) > 0 {
		n := min(len(msg), 10000)
		if _, err := w.Write(msg[:n]); err != nil {
			return err
		}
		msg = msg[n:]
	}
	return w.Close()
}

// A text message that is not UTF-8 fails Read with status 1007 also when it
// is gathered in chunks (RFC 6455 §8.1), and a read limit stops a gathered
// message as it does a streamed one (§10.4).
func TestReadWholeFailures(t *testing.T) {
	t.Run("invalid UTF-8 past the first chunk", func(t *testing.T) {
		server, client := pipePair(t, extensions{}, extensions{})
		msg := bytes.Repeat([]byte("a"), 3*chunkSize)
		msg[2*chunkSize+5] = 0xff
		go writeInPieces(context.Background(), client, MessageText, msg, true)
		_, _, err := server.Read(context.Background())
		if CloseStatus(err) != StatusInvalidFramePayloadData {
			t.Fatalf("Read = %v, want status %d", err, StatusInvalidFramePayloadData)
		}
	})
	t.Run("read limit", func(t *testing.T) {
		ext := extensions{deflate: &deflateParams{level: flate.BestSpeed}}
		server, client := pipePair(t, ext, ext)
		server.SetReadLimit(100 << 10)
		go client.Write(context.Background(), MessageBinary, make([]byte, 300<<10))
		_, _, err := server.Read(context.Background())
		if CloseStatus(err) != StatusMessageTooBig {
			t.Fatalf("Read = %v, want status %d", err, StatusMessageTooBig)
		}
	})
}

// Read allocates one slice per message: the one it returns.
func TestReadWholeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	for _, tc := range []struct {
		name     string
		ext      extensions
		size     int
		streamed bool
	}{
		{"16 B", extensions{}, 16, false},
		{"1 KiB", extensions{}, 1 << 10, false},
		{"64 KiB", extensions{}, 64 << 10, false},
		{"fragmented 30 KB", extensions{}, 30000, true},
		{"compressed 1 KiB", extensions{deflate: &deflateParams{level: flate.BestSpeed}}, 1 << 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := pipePair(t, tc.ext, tc.ext)
			ctx := context.Background()
			msg := bytes.Repeat([]byte("0123456789abcdef"), tc.size/16)
			one := func() {
				if err := writeInPieces(ctx, client, MessageBinary, msg, tc.streamed); err != nil {
					t.Fatal(err)
				}
				if _, got, err := server.Read(ctx); err != nil || len(got) != len(msg) {
					t.Fatalf("Read: %d bytes, %v", len(got), err)
				}
			}
			one()
			if n := testing.AllocsPerRun(100, one); n != 1 {
				t.Errorf("%v allocations per message read and written, want 1", n)
			}
		})
	}
}

// BenchmarkReadWhole measures Conn.Read, which returns each message in a
// new slice, against the client writing over loopback.
func BenchmarkReadWhole(b *testing.B) {
	for _, n := range []int{16, 1 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			server, client := pipePair(b, extensions{}, extensions{})
			server.SetReadLimit(2 << 20)
			msg := make([]byte, n)
			ctx := context.Background()
			go func() {
				for i := 0; i < b.N; i++ {
					if client.Write(ctx, MessageBinary, msg) != nil {
						return
					}
				}
			}()
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, _, err := server.Read(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
