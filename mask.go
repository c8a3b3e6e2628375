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

// maskWords is the masker behind [Mask], with the contract of maskGo. Long
// payloads go to maskAsm where there is one: on amd64 with AVX2
// (mask_amd64.go); elsewhere, or built with the purego tag, useMaskAsm is
// the constant false and this compiles to a call of maskGo.
func maskWords(b []byte, key uint32) uint32 {
	if len(b) >= maskAsmMin && useMaskAsm {
		return maskAsm(b, key)
	}
	return maskGo(b, key)
}

// maskGo is the portable masker. The key is the four mask bytes read
// little-endian, so that on a little-endian load of the payload byte i of
// the word meets key byte i%4. It returns the key rotated past len(b) bytes.
//
// It works eight bytes at a time, each encoding/binary load, XOR and store
// compiling to one XOR with a memory operand. A store per word is what
// bounds it, so the main loop is unrolled to 256 bytes, which spreads the
// loop's own bookkeeping (advancing b takes several instructions) over 32
// words: about 10% faster than 64-byte blocks on long payloads. The 64-byte
// loop keeps medium payloads out of the one-word loop, and one 4-byte step
// leaves at most three bytes for the byte loop, whose key rotation is a
// dependency chain.
func maskGo(b []byte, key uint32) uint32 {
	k := uint64(key)<<32 | uint64(key)
	for len(b) >= 256 {
		xorWord(b[0:], k)
		xorWord(b[8:], k)
		xorWord(b[16:], k)
		xorWord(b[24:], k)
		xorWord(b[32:], k)
		xorWord(b[40:], k)
		xorWord(b[48:], k)
		xorWord(b[56:], k)
		xorWord(b[64:], k)
		xorWord(b[72:], k)
		xorWord(b[80:], k)
		xorWord(b[88:], k)
		xorWord(b[96:], k)
		xorWord(b[104:], k)
		xorWord(b[112:], k)
		xorWord(b[120:], k)
		xorWord(b[128:], k)
		xorWord(b[136:], k)
		xorWord(b[144:], k)
		xorWord(b[152:], k)
		xorWord(b[160:], k)
		xorWord(b[168:], k)
		xorWord(b[176:], k)
		xorWord(b[184:], k)
		xorWord(b[192:], k)
		xorWord(b[200:], k)
		xorWord(b[208:], k)
		xorWord(b[216:], k)
		xorWord(b[224:], k)
		xorWord(b[232:], k)
		xorWord(b[240:], k)
		xorWord(b[248:], k)
		b = b[256:]
	}
	for len(b) >= 64 {
		xorWord(b[0:], k)
		xorWord(b[8:], k)
		xorWord(b[16:], k)
		xorWord(b[24:], k)
		xorWord(b[32:], k)
		xorWord(b[40:], k)
		xorWord(b[48:], k)
		xorWord(b[56:], k)
		b = b[64:]
	}
	for len(b) >= 8 {
		xorWord(b, k)
		b = b[8:]
	}
	// Whole words and blocks are multiples of four bytes, so the key has
	// not moved yet.
	if len(b) >= 4 {
		binary.LittleEndian.PutUint32(b, binary.LittleEndian.Uint32(b)^key)
		b = b[4:]
	}
	for i := range b {
		b[i] ^= byte(key)
		key = bits.RotateLeft32(key, -8)
	}
	return key
}

// xorWord XORs the first eight bytes of b with k.
func xorWord(b []byte, k uint64) {
	binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k)
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
