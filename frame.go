package websocket

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Opcode is the kind of a frame (RFC 6455 §5.2).
type Opcode byte

// The opcodes of RFC 6455 §5.2. Opcodes 3–7 and 11–15 are reserved.
const (
	OpContinuation Opcode = 0x0
	OpText         Opcode = 0x1
	OpBinary       Opcode = 0x2
	OpClose        Opcode = 0x8
	OpPing         Opcode = 0x9
	OpPong         Opcode = 0xA
)

// IsControl reports whether op is a control opcode (close, ping, pong or a
// reserved control opcode), whose frames carry at most 125 bytes and are
// never fragmented (§5.5).
func (op Opcode) IsControl() bool { return op&0x8 != 0 }

// IsReserved reports whether op is one of the opcodes RFC 6455 reserves for
// future use; a frame with one fails the connection (§5.2).
func (op Opcode) IsReserved() bool {
	return (op > OpBinary && op < OpClose) || op > OpPong
}

func (op Opcode) String() string {
	switch op {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return fmt.Sprintf("opcode(%d)", byte(op))
}

// MaxHeaderLen is the longest a frame header can be: two bytes, an eight-byte
// extended length and a four-byte masking key.
const MaxHeaderLen = 14

// maxControlPayload is the largest payload a control frame may carry (§5.5).
const maxControlPayload = 125

// Header is a frame header (RFC 6455 §5.2). The zero Header is an unmasked,
// non-final continuation frame with no payload.
type Header struct {
	Fin              bool   // this is the final fragment of a message
	Rsv1, Rsv2, Rsv3 bool   // reserved bits; RSV1 marks a compressed message (RFC 7692)
	Opcode           Opcode // what the payload is
	Masked           bool   // the payload is masked with MaskKey (client-to-server frames)
	MaskKey          [4]byte
	Length           int64 // payload length in bytes, 0 to 2^63-1
}

// headerLen returns the length of a header whose first two bytes are b0 and b1.
func headerLen(b0, b1 byte) int {
	n := 2
	switch b1 & 0x7F {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// errLengthOverflow is the one header defect DecodeHeader itself rejects: a
// length that does not fit in 63 bits (§5.2: "the most significant bit MUST
// be 0"). Everything else is left to the caller's checks, so that the codec
// can parse any frame a peer sends.
var errLengthOverflow = errors.New("websocket: frame length has the most significant bit set")

// DecodeHeader decodes the frame header at the start of b and returns it with
// the number of bytes it took. When b holds only part of a header it returns
// [io.ErrUnexpectedEOF]; read more and call again. It allocates nothing.
func DecodeHeader(b []byte) (h Header, n int, err error) {
	if len(b) < 2 {
		return h, 0, io.ErrUnexpectedEOF
	}
	n = headerLen(b[0], b[1])
	if len(b) < n {
		return h, 0, io.ErrUnexpectedEOF
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv1 = b[0]&0x40 != 0
	h.Rsv2 = b[0]&0x20 != 0
	h.Rsv3 = b[0]&0x10 != 0
	h.Opcode = Opcode(b[0] & 0x0F)
	h.Masked = b[1]&0x80 != 0
	i := 2
	switch l := b[1] & 0x7F; l {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(b[2:]))
		i += 2
	case 127:
		u := binary.BigEndian.Uint64(b[2:])
		if u > math.MaxInt64 {
			return h, 0, errLengthOverflow
		}
		h.Length = int64(u)
		i += 8
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		copy(h.MaskKey[:], b[i:i+4])
	}
	return h, n, nil
}

// AppendHeader appends the wire form of h to dst and returns the extended
// slice. It uses the shortest length encoding, as §5.2 requires. A negative
// Length is encoded as 0.
func AppendHeader(dst []byte, h Header) []byte {
	var b0 byte
	if h.Fin {
		b0 |= 0x80
	}
	if h.Rsv1 {
		b0 |= 0x40
	}
	if h.Rsv2 {
		b0 |= 0x20
	}
	if h.Rsv3 {
		b0 |= 0x10
	}
	b0 |= byte(h.Opcode) & 0x0F
	var b1 byte
	if h.Masked {
		b1 = 0x80
	}
	switch l := max(h.Length, 0); {
	case l <= 125:
		dst = append(dst, b0, b1|byte(l))
	case l <= math.MaxUint16:
		dst = append(dst, b0, b1|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(l))
	default:
		dst = append(dst, b0, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(l))
	}
	if h.Masked {
		dst = append(dst, h.MaskKey[:]...)
	}
	return dst
}

// ReadHeader reads one frame header from r. It reads exactly the header's
// bytes and no more, so the payload can be read from r next.
func ReadHeader(r io.Reader) (Header, error) {
	var b [MaxHeaderLen]byte
	if _, err := io.ReadFull(r, b[:2]); err != nil {
		return Header{}, err
	}
	n := headerLen(b[0], b[1])
	if _, err := io.ReadFull(r, b[2:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Header{}, err
	}
	h, _, err := DecodeHeader(b[:n])
	return h, err
}

// WriteHeader writes the wire form of h to w.
func WriteHeader(w io.Writer, h Header) error {
	var b [MaxHeaderLen]byte
	_, err := w.Write(AppendHeader(b[:0], h))
	return err
}

// checkHeader applies the rules of RFC 6455 §5.1, §5.2 and §5.5 that hold
// for any frame a peer sends: fromClient says whether the sender is a client
// (whose frames must be masked) and rsv1 whether an extension gave RSV1 a
// meaning. The error says which rule was broken; the connection must then be
// failed with status 1002.
func checkHeader(h Header, fromClient, rsv1 bool) error {
	switch {
	case h.Masked != fromClient:
		if fromClient {
			return errors.New("client sent an unmasked frame")
		}
		return errors.New("server sent a masked frame")
	case h.Rsv2 || h.Rsv3 || (h.Rsv1 && !rsv1):
		return errors.New("frame has a reserved bit set that no extension defines")
	case h.Opcode.IsReserved():
		return fmt.Errorf("frame has reserved opcode %d", byte(h.Opcode))
	case h.Opcode.IsControl() && !h.Fin:
		return fmt.Errorf("%v frame is fragmented", h.Opcode)
	case h.Opcode.IsControl() && h.Length > maxControlPayload:
		return fmt.Errorf("%v frame payload is %d bytes, more than 125", h.Opcode, h.Length)
	case h.Opcode.IsControl() && h.Rsv1:
		return fmt.Errorf("%v frame has RSV1 set", h.Opcode)
	}
	return nil
}
