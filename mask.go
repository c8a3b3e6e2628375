package websocket

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	mrand "math/rand/v2"
	"sync"
)

// Mask XORs b in place with the masking key as RFC 6455 §5.3 describes, as
// if b started at a payload offset that is a multiple of four. It returns the
// key rotated past len(b) bytes, so that a payload can be masked in chunks:
//
//	key = Mask(chunk1, key)
//	key = Mask(chunk2, key)
//
// Masking twice with the same key restores the original bytes.
func Mask(b []byte, key [4]byte) [4]byte {
	k := maskWords(b, binary.LittleEndian.Uint32(key[:]))
	binary.LittleEndian.PutUint32(key[:], k)
	return key
}

// maskWords is the masker behind [Mask]. The key is the four mask bytes read
// little-endian, so that on a little-endian load of the payload byte i of the
// word meets key byte i%4. It works eight bytes at a time, with an unrolled
// loop for long payloads, and returns the key rotated past len(b) bytes.
func maskWords(b []byte, key uint32) uint32 {
	if len(b) >= 8 {
		k := uint64(key)<<32 | uint64(key)
		for len(b) >= 64 {
			v := binary.LittleEndian.Uint64(b)
			binary.LittleEndian.PutUint64(b, v^k)
			v = binary.LittleEndian.Uint64(b[8:])
			binary.LittleEndian.PutUint64(b[8:], v^k)
			v = binary.LittleEndian.Uint64(b[16:])
			binary.LittleEndian.PutUint64(b[16:], v^k)
			v = binary.LittleEndian.Uint64(b[24:])
			binary.LittleEndian.PutUint64(b[24:], v^k)
			v = binary.LittleEndian.Uint64(b[32:])
			binary.LittleEndian.PutUint64(b[32:], v^k)
			v = binary.LittleEndian.Uint64(b[40:])
			binary.LittleEndian.PutUint64(b[40:], v^k)
			v = binary.LittleEndian.Uint64(b[48:])
			binary.LittleEndian.PutUint64(b[48:], v^k)
			v = binary.LittleEndian.Uint64(b[56:])
			binary.LittleEndian.PutUint64(b[56:], v^k)
			b = b[64:]
		}
		for len(b) >= 8 {
			v := binary.LittleEndian.Uint64(b)
			binary.LittleEndian.PutUint64(b, v^k)
			b = b[8:]
		}
	}
	for i := range b {
		b[i] ^= byte(key)
		key = bits.RotateLeft32(key, -8)
	}
	return key
}

// maskKeySources hands out ChaCha8 generators seeded from crypto/rand.
// ChaCha8 is a cryptographically strong generator, so every frame gets an
// unpredictable key (RFC 6455 §5.3) without a system call per frame.
var maskKeySources = sync.Pool{New: func() any {
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		// crypto/rand only fails when the operating system has no
		// randomness to give; a predictable key would be worse.
		panic("websocket: cannot seed mask keys: " + err.Error())
	}
	return mrand.NewChaCha8(seed)
}}

// newMaskKey returns a fresh masking key for one client frame.
func newMaskKey() [4]byte {
	src := maskKeySources.Get().(*mrand.ChaCha8)
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], uint32(src.Uint64()))
	maskKeySources.Put(src)
	return key
}
