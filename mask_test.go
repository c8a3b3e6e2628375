package websocket

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// maskBytewise is the byte-at-a-time masker of RFC 6455 §5.3 that the word
// and vector maskers are checked against. It returns the key for the byte
// after the last, as [Mask] does.
func maskBytewise(b []byte, key [4]byte) [4]byte {
	for i := range b {
		b[i] ^= key[i%4]
	}
	return keyAfter(key, len(b))
}

// keyAfter returns the masking key as it applies n bytes further on.
func keyAfter(key [4]byte, n int) [4]byte {
	return [4]byte{key[n%4], key[(n+1)%4], key[(n+2)%4], key[(n+3)%4]}
}

// A masker is one implementation under test, with the shortest payload it
// accepts.
type masker struct {
	name   string
	minLen int
	mask   func(b []byte, key [4]byte) [4]byte
}

// maskers returns every masker built into this binary: Mask as callers see
// it, the portable maskGo, and maskAsm where the machine has it, each
// called directly so that neither hides behind the other's length cutoff.
func maskers() []masker {
	ms := []masker{
		{"Mask", 0, Mask},
		{"maskGo", 0, wordMasker(maskGo)},
	}
	if useMaskAsm {
		// maskAsm needs 32 bytes (mask_amd64.s).
		ms = append(ms, masker{"maskAsm", 32, wordMasker(maskAsm)})
	}
	return ms
}

func wordMasker(f func([]byte, uint32) uint32) func([]byte, [4]byte) [4]byte {
	return func(b []byte, key [4]byte) [4]byte {
		var out [4]byte
		binary.LittleEndian.PutUint32(out[:], f(b, binary.LittleEndian.Uint32(key[:])))
		return out
	}
}

var maskTestKeys = [][4]byte{
	{0x37, 0xfa, 0x21, 0x3d}, // RFC 6455 §5.7
	{0x00, 0x00, 0x00, 0x00},
	{0xff, 0xff, 0xff, 0xff},
	{0x01, 0x02, 0x04, 0x80},
}

// checkMask masks got[off:off+n], where got starts as a copy of arena,
// with m and reports any difference from want and wantKey, outside the
// window as well: the vector masker reads and writes whole 32-byte vectors
// and must not touch a byte it does not own.
func checkMask(t *testing.T, m masker, arena, got, want []byte, off, n int, key, wantKey [4]byte) {
	t.Helper()
	copy(got, arena)
	gotKey := m.mask(got[off:off+n:off+n], key)
	if !bytes.Equal(got, want) {
		i := 0
		for got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: offset %d length %d key %x: byte %d of the window is %#02x, want %#02x",
			m.name, off, n, key, i-off, got[i], want[i])
	}
	if gotKey != wantKey {
		t.Fatalf("%s: offset %d length %d key %x: returned key %x, want %x",
			m.name, off, n, key, gotKey, wantKey)
	}
}

// TestMaskGrid checks every masker at every start offset modulo 64, which
// covers every alignment a 32-byte vector or a cache line can have, and
// every length up to 300: all head and tail sizes, around the block sizes of
// maskGo and the length cutoff of maskAsm.
func TestMaskGrid(t *testing.T) {
	const maxOff, maxLen = 64, 300
	arena := make([]byte, maxOff+maxLen+64)
	for i := range arena {
		arena[i] = byte(i*7 + 3)
	}
	masked := make([]byte, len(arena))
	got := make([]byte, len(arena))
	want := make([]byte, len(arena))
	ms := maskers()
	if !useMaskAsm {
		t.Log("no assembly masker in this build or on this CPU: checking Mask and maskGo only")
	}
	for _, key := range maskTestKeys {
		for off := 0; off < maxOff; off++ {
			// Every window starting at off is a prefix of this one, so
			// the reference runs once per offset rather than per length
			// (which matters under -race).
			copy(masked, arena)
			maskBytewise(masked[off:], key)
			copy(want, arena)
			for n := 0; n <= maxLen; n++ {
				if n > 0 {
					want[off+n-1] = masked[off+n-1]
				}
				wantKey := keyAfter(key, n)
				for _, m := range ms {
					if n >= m.minLen {
						checkMask(t, m, arena, got, want, off, n, key, wantKey)
					}
				}
			}
		}
	}
}

// TestMaskRandomLengths checks every masker on random lengths up to 64 KiB,
// at random offsets, with random keys and contents.
func TestMaskRandomLengths(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	const maxLen = 64 << 10
	arena := make([]byte, 64+maxLen+64)
	for i := range arena {
		arena[i] = byte(rng.Uint32())
	}
	got := make([]byte, len(arena))
	want := make([]byte, len(arena))
	for _, m := range maskers() {
		for i := 0; i < 200; i++ {
			n := m.minLen + rng.IntN(maxLen-m.minLen+1)
			if i%2 == 0 {
				// Half of them short enough to see many tails.
				n = m.minLen + rng.IntN(4<<10)
			}
			off := rng.IntN(64)
			var key [4]byte
			binary.LittleEndian.PutUint32(key[:], rng.Uint32())
			copy(want, arena)
			wantKey := maskBytewise(want[off:off+n], key)
			checkMask(t, m, arena, got, want, off, n, key, wantKey)
		}
	}
}

// TestMaskChunked splits payloads at random points and masks the pieces in
// order, feeding each returned key into the next call, as conn.go does for
// frames larger than its buffers; the result must equal masking it whole.
func TestMaskChunked(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	source := make([]byte, 20<<10)
	for i := range source {
		source[i] = byte(rng.Uint32())
	}
	for _, m := range maskers() {
		for i := 0; i < 300; i++ {
			n := m.minLen + rng.IntN(len(source)-m.minLen)
			payload := source[:n]
			var key [4]byte
			binary.LittleEndian.PutUint32(key[:], rng.Uint32())
			want := bytes.Clone(payload)
			wantKey := maskBytewise(want, key)

			got := bytes.Clone(payload)
			k := key
			var splits []int
			for rest := got; len(rest) > 0; {
				c := m.minLen + rng.IntN(3000)
				if c > len(rest) || len(rest)-c < m.minLen {
					c = len(rest)
				}
				k = m.mask(rest[:c], k)
				rest = rest[c:]
				splits = append(splits, c)
			}
			if !bytes.Equal(got, want) || k != wantKey {
				t.Fatalf("%s: length %d masked in chunks %v: differs from masking it whole", m.name, n, splits)
			}
		}
	}
}

// FuzzMask masks a payload whole and in two pieces, at any alignment, with
// every masker, against maskBytewise.
func FuzzMask(f *testing.F) {
	f.Add([]byte("Hello"), uint32(0x3d21fa37), uint(2), uint8(0))
	f.Add([]byte{}, uint32(1), uint(0), uint8(5))
	f.Add(bytes.Repeat([]byte{0xa5}, 33), uint32(0x80402010), uint(1), uint8(31))
	f.Add(bytes.Repeat([]byte("masking "), 40), uint32(0xdeadbeef), uint(257), uint8(6))
	f.Add(bytes.Repeat([]byte{0, 1, 2, 3, 4, 5, 6}, 1000), uint32(0x01020304), uint(4097), uint8(63))
	f.Fuzz(func(t *testing.T, data []byte, k uint32, split uint, off uint8) {
		var key [4]byte
		binary.LittleEndian.PutUint32(key[:], k)
		want := bytes.Clone(data)
		wantKey := maskBytewise(want, key)
		// Place the payload at any offset from where its memory starts.
		o := int(off % 64)
		buf := make([]byte, o+len(data))[o:]
		for _, m := range maskers() {
			if len(data) < m.minLen {
				continue
			}
			copy(buf, data)
			if got := m.mask(buf, key); !bytes.Equal(buf, want) || got != wantKey {
				t.Fatalf("%s: masking %d bytes at offset %d differs from the reference", m.name, len(data), o)
			}
			s := int(split % uint(len(data)+1))
			if s < m.minLen || len(data)-s < m.minLen {
				continue
			}
			copy(buf, data)
			if got := m.mask(buf[s:], m.mask(buf[:s], key)); !bytes.Equal(buf, want) || got != wantKey {
				t.Fatalf("%s: masking %d bytes at offset %d split at %d differs from the reference", m.name, len(data), o, s)
			}
		}
	})
}

// BenchmarkMaskVsCopy measures the masker against copy of a buffer of the
// same size. Masking reads and writes every byte once, as copy does, so
// copy is the speed to aim for (issue #7: at least half of it from 1 KiB).
// mask is [Mask]; maskGo is the portable masker, for comparison where Mask
// uses assembly. Each of them also times copy for as many iterations right
// after its own loop and reports the ratio of the speeds as vs-copy (1 = as
// fast as copy), which compares neighbouring moments on a busy machine.
func BenchmarkMaskVsCopy(b *testing.B) {
	for _, n := range []int{16, 128, 1 << 10, 4 << 10, 64 << 10, 1 << 20} {
		buf := make([]byte, n)
		dst := make([]byte, n)
		b.Run(fmt.Sprintf("mask/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			key := [4]byte{1, 2, 3, 4}
			start := time.Now()
			for i := 0; i < b.N; i++ {
				key = Mask(buf, key)
			}
			reportVsCopy(b, time.Since(start), dst, buf)
		})
		b.Run(fmt.Sprintf("maskGo/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			key := uint32(0x04030201)
			start := time.Now()
			for i := 0; i < b.N; i++ {
				key = maskGo(buf, key)
			}
			reportVsCopy(b, time.Since(start), dst, buf)
		})
		b.Run(fmt.Sprintf("copy/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for i := 0; i < b.N; i++ {
				copy(dst, buf)
			}
		})
	}
}

// reportVsCopy copies src to dst b.N times, off the benchmark's clock, and
// reports how the speed of the b.N iterations that took masking compares.
func reportVsCopy(b *testing.B, masking time.Duration, dst, src []byte) {
	b.StopTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		copy(dst, src)
	}
	b.ReportMetric(float64(time.Since(start))/float64(masking), "vs-copy")
}
