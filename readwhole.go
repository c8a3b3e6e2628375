package websocket

import (
	"context"
	"io"
)

// This file holds how Conn.Read gathers a message whole: with one
// allocation, the slice it returns, whatever the message's size, and with
// memory that grows only as the data arrives.
//
// A peer's claimed length is not trusted: many connections claiming the
// read limit and then sending nothing must not cost that much each. So only
// a message that is one frame of at most wholeDirectMax bytes is read
// straight into a slice of its claimed size. Anything larger, fragmented or
// compressed is read into pooled chunks as it arrives and copied once into
// a slice of the size it turned out to have.

// wholeDirectMax is the largest claimed length Read allocates up front.
const wholeDirectMax = 64 << 10

// readWhole reads the rest of the current message and returns its payload.
// The caller holds the read lock and has begun the message.
func (c *Conn) readWhole(ctx context.Context) ([]byte, error) {
	if !c.rd.compressed && c.rd.frame.Fin && c.rd.frameLeft <= wholeDirectMax {
		p := make([]byte, c.rd.frameLeft)
		if _, err := c.readFill(ctx, p); err != io.EOF {
			return nil, err
		}
		return p, nil
	}
	// Up to 64 chunks (4 MiB) without allocating the list.
	var local [64]*chunk
	gathered := local[:0]
	defer func() {
		for _, ch := range gathered {
			chunks.Put(ch)
		}
	}()
	total := 0
	for {
		ch := chunks.Get().(*chunk)
		gathered = append(gathered, ch)
		n, err := c.readFill(ctx, ch[:])
		total += n
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	p := make([]byte, total)
	at := 0
	for _, ch := range gathered {
		at += copy(p[at:], ch[:])
	}
	return p, nil
}

// readFill reads the current message into p until p is full or the message
// ends, and returns io.EOF once it has ended, also when it ends exactly
// where p does (for an uncompressed message that is known without waiting).
func (c *Conn) readFill(ctx context.Context, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := c.reader.read(ctx, p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	if !c.rd.compressed && c.rd.frameLeft == 0 && c.rd.frame.Fin {
		// The payload is all here; the next read only reports the end.
		_, err := c.reader.read(ctx, nil)
		return n, err
	}
	return n, nil
}
