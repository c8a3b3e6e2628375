package websocket

import (
	"context"
	"sync"
)

// PreparedMessage is a message framed once and written to many connections,
// as a broadcast does. A server writes the same bytes to every connection
// (masking makes client frames differ, so clients reuse only the payload);
// a compressed copy is made once per compression level in use. Connections
// that negotiated context takeover compress it with their own context, as
// they must.
//
// A PreparedMessage is safe for concurrent use, and the data given to
// [NewPreparedMessage] must not be modified afterwards.
type PreparedMessage struct {
	typ  MessageType
	data []byte

	mu    sync.Mutex
	forms []preparedForm
}

// preparedForm is the message as one kind of connection sends it.
type preparedForm struct {
	compressed bool
	level      int
	payload    []byte // the frame's payload
	wire       []byte // header and payload, unmasked: a server's frame
}

// NewPreparedMessage returns data as a message of type typ, ready to be
// written with [Conn.WritePrepared].
func NewPreparedMessage(typ MessageType, data []byte) *PreparedMessage {
	return &PreparedMessage{typ: typ, data: data}
}

// form returns the message framed for a connection that compresses at level
// (compressed false: not at all), making it on first use.
func (pm *PreparedMessage) form(compressed bool, level int) (*preparedForm, error) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	for i := range pm.forms {
		if f := &pm.forms[i]; f.compressed == compressed && (!compressed || f.level == level) {
			return f, nil
		}
	}
	f := preparedForm{compressed: compressed, level: level, payload: pm.data}
	if compressed {
		var fs flateState
		params := &deflateParams{level: level}
		payload, err := fs.compress(params, pm.data)
		f.payload = append([]byte(nil), payload...)
		fs.end()
		if err != nil {
			return nil, err
		}
	}
	h := Header{Fin: true, Rsv1: compressed, Opcode: Opcode(pm.typ), Length: int64(len(f.payload))}
	f.wire = append(AppendHeader(newWire(MaxHeaderLen+len(f.payload)), h), f.payload...)
	pm.forms = append(pm.forms, f)
	return &pm.forms[len(pm.forms)-1], nil
}

// WritePrepared writes a prepared message, as [Conn.Write] would write its
// data, without framing or compressing it again.
func (c *Conn) WritePrepared(ctx context.Context, pm *PreparedMessage) error {
	if err := c.msgLock.lock(ctx, c.closed); err != nil {
		return c.writeLockError(err)
	}
	defer c.msgLock.unlock()
	compressed := c.compressing(len(pm.data))
	if compressed && c.ext.deflate.compressTakeover {
		return c.writeCompressed(ctx, pm.typ, pm.data)
	}
	level := 0
	if compressed {
		level = c.ext.deflate.level
	}
	f, err := pm.form(compressed, level)
	if err != nil {
		return err
	}
	return c.writeWire(ctx, Header{Fin: true, Rsv1: compressed, Opcode: Opcode(pm.typ)}, f.payload, f.wire)
}
