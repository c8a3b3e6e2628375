package websocket

import (
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// jsonMessage is n bytes of varied JSON, the payload the comparative
// benchmark's deflate1k row echoes (internal/thirdparty, jsonText).
func jsonMessage(n int) []byte {
	rng := rand.New(rand.NewPCG(7, 7))
	symbols := []string{"ACME", "GLOBX", "INITECH", "HOOLI", "UMBRL", "STARK", "WAYNE"}
	var b strings.Builder
	b.WriteString("[")
	for {
		item := fmt.Sprintf(`{"id":%d,"symbol":%q,"price":%.2f,"volume":%d,"ts":%d},`,
			rng.IntN(1e6), symbols[rng.IntN(len(symbols))], rng.Float64()*1000, rng.IntN(1e5), 1700000000000+rng.Int64N(1e9))
		if b.Len()+len(item)+1 > n {
			break
		}
		b.WriteString(item)
	}
	s := strings.TrimSuffix(b.String(), ",")
	s += strings.Repeat(" ", max(n-len(s)-1, 0)) + "]"
	return []byte(s)[:n]
}

// loopWire is a net.Conn that reads the same bytes over and over and
// discards writes: a peer that never runs out of messages, so that a
// benchmark measures the Conn and nothing of the network.
type loopWire struct {
	wireConn // the rest of net.Conn: writes discarded, deadlines ignored
	wire     []byte
	off      int
}

func (w *loopWire) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m := copy(p[n:], w.wire[w.off:])
		n += m
		w.off = (w.off + m) % len(w.wire)
	}
	return n, nil
}

// maskedFrame is a client's frame: header and payload masked.
func maskedFrame(h Header, payload []byte) []byte {
	h.Masked, h.MaskKey, h.Length = true, [4]byte{0x12, 0x34, 0x56, 0x78}, int64(len(payload))
	wire := AppendHeader(nil, h)
	start := len(wire)
	wire = append(wire, payload...)
	for i := range wire[start:] {
		wire[start+i] ^= h.MaskKey[i&3]
	}
	return wire
}

// rawDeflate is p compressed by compress/flate as a peer without context
// takeover sends it: flushed, the flush marker cut.
func rawDeflate(p []byte, level int) []byte {
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, level)
	fw.Write(p)
	fw.Flush()
	return bytes.TrimSuffix(buf.Bytes(), deflateTail[:4])
}

// BenchmarkDeflateServer measures a server's side of a compressed echo in
// memory, a message at a time: reading a client's compressed message into
// a buffer, and writing one compressed. No context takeover, BestSpeed:
// what the comparative benchmark's deflate1k row does over TCP.
func BenchmarkDeflateServer(b *testing.B) {
	for _, n := range []int{128, 1 << 10, 16 << 10} {
		msg := jsonMessage(n)
		ext := extensions{deflate: &deflateParams{level: flate.BestSpeed}}
		b.Run(fmt.Sprintf("read/%d", n), func(b *testing.B) {
			wire := maskedFrame(Header{Fin: true, Rsv1: true, Opcode: OpText}, rawDeflate(msg, flate.BestSpeed))
			c := newConn(&loopWire{wire: wire}, true, nil, "", ext)
			ctx := context.Background()
			buf := make([]byte, n+1)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				_, r, err := c.Reader(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if m, err := io.ReadFull(r, buf); m != n || err != io.ErrUnexpectedEOF {
					b.Fatalf("read %d bytes, %v", m, err)
				}
			}
		})
		b.Run(fmt.Sprintf("write/%d", n), func(b *testing.B) {
			c := newConn(&loopWire{wire: []byte{0}}, true, nil, "", ext)
			ctx := context.Background()
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := c.Write(ctx, MessageText, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompressMessage compares the deflater with compress/flate at
// BestSpeed, reset for each message as a pooled writer is, on JSON
// messages.
func BenchmarkCompressMessage(b *testing.B) {
	for _, n := range []int{128, 1 << 10, 16 << 10, 256 << 10} {
		msg := jsonMessage(n)
		b.Run(fmt.Sprintf("deflater/%d", n), func(b *testing.B) {
			d := new(deflater)
			var out []byte
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				out = d.compress(out[:0], msg, false)
			}
			b.ReportMetric(float64(len(out)), "bytes/msg")
		})
		b.Run(fmt.Sprintf("flate/%d", n), func(b *testing.B) {
			var buf bytes.Buffer
			fw, _ := flate.NewWriter(&buf, flate.BestSpeed)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				buf.Reset()
				fw.Reset(&buf)
				fw.Write(msg)
				fw.Flush()
			}
			b.ReportMetric(float64(buf.Len()-4), "bytes/msg")
		})
	}
}
