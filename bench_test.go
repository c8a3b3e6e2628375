package websocket

import (
	"compress/flate"
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func BenchmarkHeader(b *testing.B) {
	h := Header{Fin: true, Opcode: OpBinary, Masked: true, MaskKey: [4]byte{1, 2, 3, 4}, Length: 70000}
	var buf [MaxHeaderLen]byte
	b.Run("append", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			AppendHeader(buf[:0], h)
		}
	})
	wire := AppendHeader(nil, h)
	b.Run("decode", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			DecodeHeader(wire)
		}
	})
}

// BenchmarkMessage writes messages from a client and reads them on a server
// over loopback TCP, into and from caller buffers: the steady state, which
// allocates nothing.
func BenchmarkMessage(b *testing.B) {
	json := []byte(strings.Repeat(`{"symbol":"ACME","price":42.17,"volume":1200},`, 24))[:1024]
	for _, mode := range []string{"plain", "deflate", "deflate-takeover"} {
		for _, n := range []int{16, 1 << 10, 64 << 10, 1 << 20} {
			if mode != "plain" && n != 1<<10 && n != 64<<10 {
				continue
			}
			b.Run(fmt.Sprintf("%s/%d", mode, n), func(b *testing.B) {
				var ext extensions
				switch mode {
				case "deflate":
					ext.deflate = &deflateParams{level: flate.BestSpeed}
				case "deflate-takeover":
					ext.deflate = &deflateParams{level: flate.BestSpeed, compressTakeover: true, inflateTakeover: true}
				}
				server, client := pipePair(b, ext, ext)
				server.SetReadLimit(2 << 20)
				msg := make([]byte, n)
				for i := range msg {
					msg[i] = json[i%len(json)]
				}
				ctx := context.Background()
				done := make(chan error, 1)
				go func() {
					for i := 0; i < b.N; i++ {
						if err := client.Write(ctx, MessageText, msg); err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
				buf := make([]byte, n+1)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					_, r, err := server.Reader(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(r, buf[:n]); err != nil {
						b.Fatal(err)
					}
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// BenchmarkEcho measures round trips: the client writes a message, the
// server reads it whole and writes it back, the client reads the echo. The
// reader is idle when each message arrives, as on most real connections.
func BenchmarkEcho(b *testing.B) {
	for _, n := range []int{16, 1 << 10, 16 << 10} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			server, client := pipePair(b, extensions{}, extensions{})
			ctx := context.Background()
			go func() {
				buf := make([]byte, n)
				for {
					typ, r, err := server.Reader(ctx)
					if err != nil {
						return
					}
					m, _ := io.ReadFull(r, buf)
					if server.Write(ctx, typ, buf[:m]) != nil {
						return
					}
				}
			}()
			msg := make([]byte, n)
			buf := make([]byte, n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := client.Write(ctx, MessageBinary, msg); err != nil {
					b.Fatal(err)
				}
				_, r, err := client.Reader(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(r, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIdleConnMemory opens connections, exchanges one message each
// way on each, leaves a goroutine blocked reading on both ends, as servers
// and clients idle, and reports heap and goroutine stack per connection
// (each pair counts as two connections) after a GC.
func BenchmarkIdleConnMemory(b *testing.B) {
	for _, mode := range []string{"plain", "deflate", "deflate-takeover"} {
		b.Run(mode, func(b *testing.B) {
			const pairs = 200
			var ext extensions
			switch mode {
			case "deflate":
				ext.deflate = &deflateParams{level: flate.BestSpeed}
			case "deflate-takeover":
				ext.deflate = &deflateParams{level: flate.BestSpeed, compressTakeover: true, inflateTakeover: true}
			}
			msg := []byte(strings.Repeat("hello idle world ", 20))
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				conns := make([]*Conn, 0, 2*pairs)
				var readers sync.WaitGroup
				for j := 0; j < pairs; j++ {
					s, c := pipePair(b, ext, ext)
					for _, ends := range [][2]*Conn{{c, s}, {s, c}} {
						go ends[0].Write(ctx, MessageText, msg)
						if _, _, err := ends[1].Read(ctx); err != nil {
							b.Fatal(err)
						}
					}
					for _, end := range []*Conn{s, c} {
						readers.Add(1)
						go func() {
							defer readers.Done()
							end.Read(ctx)
						}()
					}
					conns = append(conns, s, c)
				}
				time.Sleep(100 * time.Millisecond) // let the readers block
				runtime.GC()
				runtime.ReadMemStats(&after)
				heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
				stack := float64(after.StackInuse) - float64(before.StackInuse)
				b.ReportMetric(heap/float64(len(conns))/1024, "heap-KiB/conn")
				b.ReportMetric(stack/float64(len(conns))/1024, "stack-KiB/conn")
				for _, c := range conns {
					c.CloseNow()
				}
				readers.Wait()
				// What a closed Conn the application still holds keeps.
				runtime.GC()
				runtime.GC() // the pools' victim caches too
				runtime.ReadMemStats(&after)
				closed := float64(after.HeapAlloc) - float64(before.HeapAlloc)
				b.ReportMetric(closed/float64(len(conns))/1024, "closed-heap-KiB/conn")
				runtime.KeepAlive(conns)
			}
		})
	}
}
