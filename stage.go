package websocket

import (
	"math/bits"
	"net"
	"runtime"
	"sync"
	"unsafe"
)

// This file holds how a frame too large for the pooled write buffer reaches
// the kernel when it is not written in place: copied, behind its header,
// into a staging area of pooled 64 KiB chunks, which are whole pages, and
// written with one system call per mebibyte on a socket.
//
// A client must stage: its payload is masked, and the caller's bytes must
// not change. A server stages only where writing in place would likely be
// slow. On x86-64 the kernel copies a write into the socket with REP MOVSB,
// which on the AMD EPYC measured here runs about ten times slower when the
// destination lies 1 to 15 bytes past the source modulo the page size, and
// up to a quarter slower from 16 to 63 bytes. The destination is the sending
// thread's page fragment, which starts a page whenever the skbs before have
// been freed (as between a request and its answer), or stands a few small
// frames into one. So a page-aligned payload, which is what make returns
// for large slices, lands exactly there behind its 4 or 10 header bytes.
// Staged, the header starts mid-page, which no small offset of the
// destination brings within 63 bytes.
//
// Measured on an AMD EPYC, echoing 1 MiB messages on one connection over
// loopback: the kernel's copy took half of the server's CPU time in place
// and a tenth staged, for about 1.5× the throughput. BenchmarkWriteLarge shows
// 1.4× for 1 MiB answers. Where the fragment's offset is random (many busy
// connections on a thread) staging costs a copy and gains little: 64 KiB
// messages on 16 pipelined connections came out even.

const (
	stageOffset = 2048 // where the header goes in the first chunk: mid-page
	stageChunks = 16   // 1 MiB per system call
)

// stagingArea is where a large frame is assembled for writev.
type stagingArea struct {
	chunks [stageChunks]*chunk
	iov    [stageChunks][]byte
	bufs   net.Buffers // iov as net.Buffers; a field, so WriteTo's pointer does not escape
	sys    stageSys
}

// stageSlowWrites lets BenchmarkWriteLarge measure the copy in place.
var stageSlowWrites = true

var stagingAreas = sync.Pool{New: func() any { return new(stagingArea) }}

// writeStaged writes a frame whose encoded header is head, copying payload
// behind it into a staging area and masking the copy from key if masked.
// It returns how many bytes reached the net.Conn.
//
// The copy is worth making only while the kernel takes it at once: a
// staged write that waited for a slow peer would hold its chunks all the
// while. So where the socket is the Conn's own, up to 1 MiB is offered
// without waiting, and once the kernel takes less, a server's frame goes on
// in place and a client's, which must be masked, 64 KiB at a time. Over
// anything else (TLS, say) every write may wait, and takes 64 KiB.
func (c *Conn) writeStaged(head, payload []byte, masked bool, key uint32) (int, error) {
	s := stagingAreas.Get().(*stagingArea)
	defer stagingAreas.Put(s)
	now := canWriteNow && c.in.raw != nil
	written := 0
	for len(head)+len(payload) > 0 {
		limit := 1
		if now {
			limit = stageChunks
		}
		n, staged := s.fill(head, payload, masked, key, limit)
		var m int
		var err error
		if now {
			m, err = s.writeNow(c.in.raw, s.iov[:n])
		} else {
			s.bufs = s.iov[:n]
			var m64 int64
			m64, err = writeVector(c.nc, &s.bufs)
			m, s.bufs = int(m64), nil
		}
		for i := range n {
			chunks.Put(s.chunks[i])
			s.chunks[i], s.iov[i] = nil, nil
		}
		written += m
		if err != nil {
			return written, err
		}
		fromHead := min(m, len(head))
		head, payload = head[fromHead:], payload[m-fromHead:]
		key = bits.RotateLeft32(key, -8*((m-fromHead)%4))
		if m < staged {
			// The peer reads slower than we write.
			now = false
			if !masked {
				m, err := c.writeInPlace(head, payload)
				return written + m, err
			}
		}
	}
	return written, nil
}

// fill copies head and then payload into up to limit chunks, masking the
// payload from key if masked, and returns how many chunks and bytes it
// filled. A header starts the first chunk mid-page.
func (s *stagingArea) fill(head, payload []byte, masked bool, key uint32, limit int) (n, staged int) {
	for ; n < limit && len(head)+len(payload) > 0; n++ {
		s.chunks[n] = chunks.Get().(*chunk)
		b := s.chunks[n][:0]
		if len(head) > 0 {
			b = append(s.chunks[n][stageOffset:stageOffset], head...)
		}
		head = nil
		k := min(len(payload), cap(b)-len(b))
		b = append(b, payload[:k]...)
		if masked {
			key = maskWords(b[len(b)-k:], key)
		}
		payload = payload[k:]
		s.iov[n] = b
		staged += len(b)
	}
	return n, staged
}

// newWire returns an empty slice of capacity n for a frame that is written
// whole, as a prepared message is. A large one starts mid-page, as a staged
// frame does, rather than on the page boundary where make puts it.
func newWire(n int) []byte {
	if n <= writeBufferSize {
		return make([]byte, 0, n)
	}
	b := make([]byte, n+pageSize)
	skip := (stageOffset - pageOffset(b)) & (pageSize - 1)
	return b[skip : skip : skip+n]
}

// pageSize is the granularity of the kernel's copy that matters here; on
// x86-64, where it matters, pages are 4 KiB.
const pageSize = 4096

// pageOffset returns where p starts within its page.
func pageOffset(p []byte) int {
	return int(uintptr(unsafe.Pointer(unsafe.SliceData(p)))) & (pageSize - 1)
}

// slowInPlace reports whether the kernel would likely copy payload slowly,
// written in place behind a header of headerLen bytes: whether a header
// that starts a page of the socket's buffer, or any of the 63 bytes after,
// puts the payload's destination 1 to 63 bytes past it (see the top of this
// file).
func slowInPlace(headerLen int, payload []byte) bool {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return false
	}
	distance := (headerLen - pageOffset(payload)) & (pageSize - 1)
	return distance < 64 || distance > pageSize-64
}
