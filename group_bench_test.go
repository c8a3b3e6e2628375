package websocket_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplex-go/websocket"
)

// BenchmarkBroadcastFanout writes one 1 KiB message to 1000 server
// connections over loopback, whose clients read and discard, as a broadcast
// does: framed (and compressed) once with a PreparedMessage, against
// Conn.Write of the same bytes to each. Besides time per broadcast it
// reports time and heap bytes per recipient.
func BenchmarkBroadcastFanout(b *testing.B) {
	const recipients = 1000
	msg := []byte(`{"type":"tick","quotes":[` + strings.Repeat(`{"s":"ACME","p":112.50,"c":-0.25},`, 29) + `{"s":"ACME","p":112.5,"c":0}]}`)
	msg = msg[:1024]
	for _, setup := range []struct {
		name string
		comp *websocket.CompressionOptions
	}{
		{"plain", nil},
		{"deflate", &websocket.CompressionOptions{}}, // no context takeover
	} {
		b.Run(setup.name, func(b *testing.B) {
			conns := fanoutConns(b, recipients, setup.comp)
			ctx := context.Background()
			b.Run("prepared", func(b *testing.B) {
				measureFanout(b, recipients, len(msg), func() {
					pm := websocket.NewPreparedMessage(websocket.MessageText, msg)
					for _, c := range conns {
						if err := c.WritePrepared(ctx, pm); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
			b.Run("write", func(b *testing.B) {
				measureFanout(b, recipients, len(msg), func() {
					for _, c := range conns {
						if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		})
	}
}

// measureFanout runs broadcast b.N times and reports per-recipient figures.
func measureFanout(b *testing.B, recipients, size int, broadcast func()) {
	broadcast() // warm the pools
	b.SetBytes(int64(recipients * size))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		broadcast()
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	sends := float64(b.N * recipients)
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/sends, "B/recipient")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/sends, "allocs/recipient")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/sends, "ns/recipient")
}

// fanoutConns returns n server connections over loopback, offering
// compression comp, whose clients read and discard everything. They are
// closed with a Group when the benchmark ends.
func fanoutConns(b *testing.B, n int, comp *websocket.CompressionOptions) []*websocket.Conn {
	b.Helper()
	var g websocket.Group
	accepted := make(chan *websocket.Conn)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Compression: comp})
		if err != nil {
			return
		}
		g.Add(c)
		accepted <- c
	}))
	defer srv.Close() // hijacked connections live on
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var draining sync.WaitGroup
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			b.Errorf("closing the connections: %v", err)
		}
		draining.Wait()
	})
	conns := make([]*websocket.Conn, 0, n)
	for range n {
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Compression: comp})
		if err != nil {
			b.Fatal(err)
		}
		draining.Add(1)
		go func() {
			defer draining.Done()
			defer c.CloseNow()
			for {
				_, r, err := c.Reader(context.Background())
				if err != nil {
					return
				}
				if _, err := io.Copy(io.Discard, r); err != nil {
					return
				}
			}
		}()
		conns = append(conns, <-accepted)
	}
	return conns
}
