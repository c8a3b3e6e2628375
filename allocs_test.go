package websocket

import (
	"bytes"
	"compress/flate"
	"context"
	"io"
	"testing"
	"unsafe"
)

// Steady-state reads and writes into and from the caller's buffers
// allocate nothing, plain or compressed, in either role. (The race
// detector's sync.Pool drops items at random, so CI runs this without it.)
func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	for _, c := range []struct {
		name string
		ext  extensions
	}{
		{"plain", extensions{}},
		{"deflate", extensions{deflate: &deflateParams{level: flate.BestSpeed}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			server, client := pipePair(t, c.ext, c.ext)
			ctx := context.Background()
			msg := bytes.Repeat([]byte("0123456789abcdef"), 64)
			buf := make([]byte, len(msg))
			for _, dir := range [][2]*Conn{{client, server}, {server, client}} {
				from, to := dir[0], dir[1]
				oneMessage := func() {
					if err := from.Write(ctx, MessageBinary, msg); err != nil {
						t.Fatal(err)
					}
					_, r, err := to.Reader(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := io.ReadFull(r, buf); err != nil {
						t.Fatal(err)
					}
				}
				oneMessage()
				if n := testing.AllocsPerRun(200, oneMessage); n != 0 {
					t.Errorf("server=%v writing: %v allocations per message, want 0", from.server, n)
				}
			}
		})
	}
}

// A Conn is most of what an idle connection keeps on the heap, and the
// allocator rounds it up to a size class: 896 bytes holds it on 64-bit
// systems, the next class is 1024. An object this large that holds
// pointers also carries an 8-byte header of the allocator's (since Go
// 1.22). A field added past that costs every connection 128 bytes; look
// for padding to take it from first.
func TestConnFitsItsSizeClass(t *testing.T) {
	const sizeClass, mallocHeader = 896, 8
	if size := unsafe.Sizeof(Conn{}); unsafe.Sizeof(uintptr(0)) == 8 && size+mallocHeader > sizeClass {
		t.Errorf("a Conn is %d bytes, %d with the allocator's header: more than the %d-byte size class it was kept in", size, size+mallocHeader, sizeClass)
	}
}
