package websocket

import (
	"encoding/binary"
	"unicode/utf8"
)

// utf8Validator checks UTF-8 that arrives in pieces, as the payload of a
// fragmented text message does. RFC 6455 §8.1 makes invalid UTF-8 fail the
// connection; the validator reports it as soon as a byte makes the text
// definitely invalid, not only at the end of the message, so a peer cannot
// make us hold a message that could never be delivered.
//
// The zero value is ready to use, at the start of a text.
type utf8Validator struct {
	need   int8 // continuation bytes still owed by the current sequence
	lo, hi byte // the range the next continuation byte must be in
}

// write feeds p to the validator and reports whether the text so far is
// still a prefix of valid UTF-8.
func (v *utf8Validator) write(p []byte) bool {
	for len(p) > 0 {
		if v.need > 0 {
			b := p[0]
			if b < v.lo || b > v.hi {
				return false
			}
			v.need--
			v.lo, v.hi = 0x80, 0xBF
			p = p[1:]
			continue
		}
		// At a sequence boundary: skip ASCII a word at a time, hand whole
		// sequences to utf8.Valid, and keep only a trailing partial
		// sequence for the byte-wise state machine.
		for len(p) >= 8 && binary.LittleEndian.Uint64(p)&0x8080808080808080 == 0 {
			p = p[8:]
		}
		cut := len(p) - partialTail(p)
		if !utf8.Valid(p[:cut]) {
			return false
		}
		p = p[cut:]
		if len(p) == 0 {
			return true
		}
		if !v.start(p[0]) {
			return false
		}
		p = p[1:]
	}
	return true
}

// start begins a multi-byte sequence with lead byte b, recording the
// continuation bytes it needs and the range RFC 3629 §4 allows for the first
// of them (which rules out overlong forms, surrogates and code points past
// U+10FFFF).
func (v *utf8Validator) start(b byte) bool {
	switch {
	case b < 0x80:
		return true
	case b < 0xC2:
		return false
	case b < 0xE0:
		v.need, v.lo, v.hi = 1, 0x80, 0xBF
	case b == 0xE0:
		v.need, v.lo, v.hi = 2, 0xA0, 0xBF
	case b == 0xED:
		v.need, v.lo, v.hi = 2, 0x80, 0x9F
	case b < 0xF0:
		v.need, v.lo, v.hi = 2, 0x80, 0xBF
	case b == 0xF0:
		v.need, v.lo, v.hi = 3, 0x90, 0xBF
	case b < 0xF4:
		v.need, v.lo, v.hi = 3, 0x80, 0xBF
	case b == 0xF4:
		v.need, v.lo, v.hi = 3, 0x80, 0x8F
	default:
		return false
	}
	return true
}

// complete reports whether the text ends at a sequence boundary, as a whole
// message must.
func (v *utf8Validator) complete() bool { return v.need == 0 }

// partialTail returns the length of an incomplete multi-byte sequence at the
// end of p: a lead byte in the last three bytes whose sequence p cuts short.
func partialTail(p []byte) int {
	for i := 1; i <= 3 && i <= len(p); i++ {
		b := p[len(p)-i]
		if b < 0x80 {
			return 0
		}
		if b >= 0xC0 {
			size := 2
			if b >= 0xF0 {
				size = 4
			} else if b >= 0xE0 {
				size = 3
			}
			if size > i {
				return i
			}
			return 0
		}
	}
	return 0
}
