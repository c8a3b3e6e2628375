// Package wsjson reads and writes JSON values as WebSocket text messages,
// one value per message.
//
// Both functions borrow their buffer from a pool, so a connection that
// exchanges many values does not allocate a buffer for each, and an idle
// connection holds none.
package wsjson

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/duplex-go/websocket"
)

// Read reads the next message from c and decodes it as JSON into v, as
// [json.Unmarshal] does. The message is read whole, so its size is bounded
// by the connection's read limit ([websocket.Conn.SetReadLimit]); a larger
// message fails the connection with status 1009.
//
// A binary message, or a text message that is not valid JSON for v, is
// returned as an error and the connection stays open: what to do about a
// peer that sends them is the caller's decision. Errors from the
// connection are returned as they are, so that [websocket.CloseStatus]
// works on them.
func Read(ctx context.Context, c *websocket.Conn, v any) error {
	typ, r, err := c.Reader(ctx)
	if err != nil {
		return err
	}
	if typ != websocket.MessageText {
		// The unread message is skipped by the next read.
		return fmt.Errorf("wsjson: received a %v message; JSON comes in text messages", typ)
	}
	buf := getBuffer()
	defer putBuffer(buf)
	if _, err := buf.ReadFrom(r); err != nil {
		return err
	}
	if err := json.Unmarshal(buf.Bytes(), v); err != nil {
		return fmt.Errorf("wsjson: decoding a %d-byte message: %w", buf.Len(), err)
	}
	return nil
}

// Write encodes v as JSON, as [json.Marshal] does, and writes it to c as
// one text message. Like [websocket.Conn.Write] it is safe to call from
// concurrent goroutines, and ctx bounds the wait for a turn to write and
// the write itself.
func Write(ctx context.Context, c *websocket.Conn, v any) error {
	buf := getBuffer()
	defer putBuffer(buf)
	if err := json.NewEncoder(buf).Encode(v); err != nil {
		return fmt.Errorf("wsjson: encoding a %T: %w", v, err)
	}
	// Encode ends the value with a newline, which the message does not
	// need.
	return c.Write(ctx, websocket.MessageText, bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}))
}

// maxPooledBuffer is the largest buffer kept for reuse. A buffer that grew
// past it for an unusually large message is left to the garbage collector,
// so that one large message does not pin its memory in the pool.
const maxPooledBuffer = 64 << 10

var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer() *bytes.Buffer { return buffers.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > maxPooledBuffer {
		return
	}
	b.Reset()
	buffers.Put(b)
}
