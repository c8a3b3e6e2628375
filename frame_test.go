package websocket

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

// unhex decodes hex written with spaces between bytes.
func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

var helloKey = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// rfcFrames are the examples of RFC 6455 §5.7, plus the length boundaries
// of §5.2. Each is read and written by the tests below.
var rfcFrames = []struct {
	name    string
	wire    []byte
	header  Header
	payload []byte
}{
	{"single-frame unmasked text", unhex("81 05 48 65 6c 6c 6f"),
		Header{Fin: true, Opcode: OpText, Length: 5}, []byte("Hello")},
	{"single-frame masked text", unhex("81 85 37 fa 21 3d 7f 9f 4d 51 58"),
		Header{Fin: true, Opcode: OpText, Masked: true, MaskKey: helloKey, Length: 5}, []byte("Hello")},
	{"fragmented unmasked text, first", unhex("01 03 48 65 6c"),
		Header{Opcode: OpText, Length: 3}, []byte("Hel")},
	{"fragmented unmasked text, last", unhex("80 02 6c 6f"),
		Header{Fin: true, Opcode: OpContinuation, Length: 2}, []byte("lo")},
	{"unmasked ping", unhex("89 05 48 65 6c 6c 6f"),
		Header{Fin: true, Opcode: OpPing, Length: 5}, []byte("Hello")},
	{"masked pong", unhex("8a 85 37 fa 21 3d 7f 9f 4d 51 58"),
		Header{Fin: true, Opcode: OpPong, Masked: true, MaskKey: helloKey, Length: 5}, []byte("Hello")},
	{"256 bytes binary", append(unhex("82 7E 01 00"), make([]byte, 256)...),
		Header{Fin: true, Opcode: OpBinary, Length: 256}, make([]byte, 256)},
	{"64KiB binary", append(unhex("82 7F 00 00 00 00 00 01 00 00"), make([]byte, 65536)...),
		Header{Fin: true, Opcode: OpBinary, Length: 65536}, make([]byte, 65536)},
	{"125 bytes: 7-bit length", append(unhex("82 7D"), make([]byte, 125)...),
		Header{Fin: true, Opcode: OpBinary, Length: 125}, make([]byte, 125)},
	{"126 bytes: 16-bit length", append(unhex("82 7E 00 7E"), make([]byte, 126)...),
		Header{Fin: true, Opcode: OpBinary, Length: 126}, make([]byte, 126)},
	{"65535 bytes: 16-bit length", append(unhex("82 7E FF FF"), make([]byte, 65535)...),
		Header{Fin: true, Opcode: OpBinary, Length: 65535}, make([]byte, 65535)},
	{"empty close with RSV bits", unhex("F8 00"),
		Header{Fin: true, Rsv1: true, Rsv2: true, Rsv3: true, Opcode: OpClose}, nil},
}

func TestRFCFramesDecode(t *testing.T) {
	for _, f := range rfcFrames {
		t.Run(f.name, func(t *testing.T) {
			h, n, err := DecodeHeader(f.wire)
			if err != nil {
				t.Fatal(err)
			}
			if h != f.header {
				t.Fatalf("header = %+v, want %+v", h, f.header)
			}
			payload := bytes.Clone(f.wire[n:])
			if h.Masked {
				Mask(payload, h.MaskKey)
			}
			if !bytes.Equal(payload, f.payload) && !(len(payload) == 0 && len(f.payload) == 0) {
				t.Fatalf("payload = %q, want %q", payload, f.payload)
			}
			// ReadHeader reads exactly the header, even one byte at a time.
			r := iotest.OneByteReader(bytes.NewReader(f.wire))
			h2, err := ReadHeader(r)
			if err != nil || h2 != f.header {
				t.Fatalf("ReadHeader = %+v, %v", h2, err)
			}
			rest, _ := io.ReadAll(r)
			if len(rest) != len(f.wire)-n {
				t.Fatalf("ReadHeader left %d bytes, want %d", len(rest), len(f.wire)-n)
			}
		})
	}
}

func TestRFCFramesEncode(t *testing.T) {
	for _, f := range rfcFrames {
		t.Run(f.name, func(t *testing.T) {
			wire := AppendHeader(nil, f.header)
			payload := bytes.Clone(f.payload)
			if f.header.Masked {
				Mask(payload, f.header.MaskKey)
			}
			wire = append(wire, payload...)
			if !bytes.Equal(wire, f.wire) {
				t.Fatalf("wire = % x, want % x", wire[:min(len(wire), 16)], f.wire[:min(len(f.wire), 16)])
			}
		})
	}
}

func TestDecodeHeaderShort(t *testing.T) {
	wire := unhex("82 FF 00 00 00 00 00 01 00 00 01 02 03 04")
	for i := 0; i < len(wire); i++ {
		if _, _, err := DecodeHeader(wire[:i]); err != io.ErrUnexpectedEOF {
			t.Fatalf("DecodeHeader of %d bytes: err = %v, want io.ErrUnexpectedEOF", i, err)
		}
	}
	h, n, err := DecodeHeader(wire)
	if err != nil || n != 14 || h.Length != 65536 || h.MaskKey != [4]byte{1, 2, 3, 4} {
		t.Fatalf("DecodeHeader = %+v, %d, %v", h, n, err)
	}
}

// §5.2: "the most significant bit MUST be 0". A length of 2^63 or more
// must be rejected, not turned into a negative length.
func TestDecodeHeaderLengthOverflow(t *testing.T) {
	_, _, err := DecodeHeader(unhex("82 7F 80 00 00 00 00 00 00 00"))
	if !errors.Is(err, errLengthOverflow) {
		t.Fatalf("err = %v, want errLengthOverflow", err)
	}
	h, _, err := DecodeHeader(unhex("82 7F 7F FF FF FF FF FF FF FF"))
	if err != nil || h.Length != math.MaxInt64 {
		t.Fatalf("largest length: %+v, %v", h, err)
	}
}

// §5.2: the minimal number of bytes must encode the length.
func TestAppendHeaderMinimalLength(t *testing.T) {
	for _, c := range []struct {
		length int64
		size   int
	}{{0, 2}, {125, 2}, {126, 4}, {65535, 4}, {65536, 10}, {math.MaxInt64, 10}} {
		if got := len(AppendHeader(nil, Header{Length: c.length})); got != c.size {
			t.Errorf("length %d: header is %d bytes, want %d", c.length, got, c.size)
		}
	}
}

func TestCheckHeader(t *testing.T) {
	ok := Header{Fin: true, Opcode: OpText, Masked: true}
	cases := []struct {
		name       string
		h          Header
		fromClient bool
		rsv1       bool
		wantErr    string
	}{
		{"masked client frame", ok, true, false, ""},
		{"unmasked client frame (§5.1)", Header{Fin: true, Opcode: OpText}, true, false, "unmasked"},
		{"masked server frame (§5.1)", ok, false, false, "masked"},
		{"RSV1 without extension", Header{Fin: true, Rsv1: true, Opcode: OpText, Masked: true}, true, false, "reserved bit"},
		{"RSV1 with deflate", Header{Fin: true, Rsv1: true, Opcode: OpText, Masked: true}, true, true, ""},
		{"RSV2", Header{Fin: true, Rsv2: true, Opcode: OpText, Masked: true}, true, true, "reserved bit"},
		{"RSV3", Header{Fin: true, Rsv3: true, Opcode: OpText, Masked: true}, true, true, "reserved bit"},
		{"reserved data opcode 3", Header{Fin: true, Opcode: 3, Masked: true}, true, false, "reserved opcode"},
		{"reserved control opcode 11", Header{Fin: true, Opcode: 11, Masked: true}, true, false, "reserved opcode"},
		{"fragmented ping (§5.5)", Header{Opcode: OpPing, Masked: true}, true, false, "fragmented"},
		{"ping of 125 bytes", Header{Fin: true, Opcode: OpPing, Masked: true, Length: 125}, true, false, ""},
		{"ping of 126 bytes (§5.5)", Header{Fin: true, Opcode: OpPing, Masked: true, Length: 126}, true, false, "more than 125"},
		{"compressed ping", Header{Fin: true, Rsv1: true, Opcode: OpPing, Masked: true}, true, true, "RSV1"},
	}
	for _, c := range cases {
		err := checkHeader(c.h, c.fromClient, c.rsv1)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: unexpected error %v", c.name, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: err = %v, want one mentioning %q", c.name, err, c.wantErr)
		}
	}
}

func TestMaskKeysDiffer(t *testing.T) {
	seen := map[[4]byte]bool{}
	for i := 0; i < 1000; i++ {
		seen[newMaskKey()] = true
	}
	if len(seen) < 990 {
		t.Fatalf("1000 mask keys have only %d distinct values", len(seen))
	}
}

func TestUTF8Validator(t *testing.T) {
	cases := []struct {
		in         string
		prefixOK   bool // valid so far
		completeOK bool // valid as a whole
	}{
		{"", true, true},
		{"hello", true, true},
		{"κόσμε", true, true},
		{"\xf0\x9f\x98\x80", true, true},
		{"\xf4\x8f\xbf\xbf", true, true}, // U+10FFFF
		{"\xce", true, false},            // truncated 2-byte
		{"\xe2\x82", true, false},        // truncated 3-byte
		{"\xf0\x9f\x98", true, false},    // truncated 4-byte
		{"\xc0\xaf", false, false},       // overlong
		{"\xe0\x80\xaf", false, false},   // overlong
		{"\xed\xa0\x80", false, false},   // surrogate
		{"\xf4\x90\x80\x80", false, false},
		{"\xf4\x90", false, false}, // definitely invalid before it ends
		{"\xed\xa0", false, false},
		{"\xff", false, false},
		{"\x80", false, false},
		{"abc\xcedef", false, false},
	}
	for _, c := range cases {
		for split := 0; split <= len(c.in); split++ {
			var v utf8Validator
			ok := v.write([]byte(c.in[:split])) && v.write([]byte(c.in[split:]))
			if ok != c.prefixOK {
				t.Errorf("%q split at %d: prefix valid = %v, want %v", c.in, split, ok, c.prefixOK)
			}
			if got := ok && v.complete(); got != c.completeOK {
				t.Errorf("%q split at %d: complete = %v, want %v", c.in, split, got, c.completeOK)
			}
		}
	}
}

// The validator agrees with unicode/utf8 on random byte strings fed in
// random pieces.
func TestUTF8ValidatorRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "é", "€", "😀", "\x80", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\xf4\x90", "zzzzzzzzz"}
	for i := 0; i < 5000; i++ {
		var sb strings.Builder
		for j := rng.IntN(12); j > 0; j-- {
			sb.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		s := sb.String()
		var v utf8Validator
		ok := true
		for rest := s; rest != "" && ok; {
			k := 1 + rng.IntN(len(rest))
			ok = v.write([]byte(rest[:k]))
			rest = rest[k:]
		}
		if got, want := ok && v.complete(), utf8.ValidString(s); got != want {
			t.Fatalf("%q: validator says %v, utf8.ValidString %v", s, got, want)
		}
	}
}

func TestAcceptKeyRFCExample(t *testing.T) {
	// RFC 6455 §1.3.
	if got := AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("AcceptKey = %q", got)
	}
}

func TestChallengeKeys(t *testing.T) {
	k := newChallengeKey()
	if !validChallengeKey(k) || k == newChallengeKey() {
		t.Fatalf("bad or repeated key %q", k)
	}
	for _, bad := range []string{"", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ==x", "!!!!!!!!!!!!!!!!!!!!!!==", "dGhlIHNhbXBsZSBub25jZWU="} {
		if validChallengeKey(bad) {
			t.Errorf("validChallengeKey(%q) = true", bad)
		}
	}
}

func TestClosePayload(t *testing.T) {
	cases := []struct {
		payload  []byte
		want     CloseError
		failCode StatusCode
	}{
		{nil, CloseError{Code: StatusNoStatusRcvd}, 0},
		{[]byte{0x03}, CloseError{}, StatusProtocolError},
		{[]byte{0x03, 0xe8}, CloseError{Code: 1000}, 0},
		{append([]byte{0x0f, 0xa0}, "bye"...), CloseError{Code: 4000, Reason: "bye"}, 0},
		{[]byte{0x03, 0xe8, 0xff}, CloseError{}, StatusInvalidFramePayloadData},
	}
	for _, code := range []int{0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535} {
		cases = append(cases, struct {
			payload  []byte
			want     CloseError
			failCode StatusCode
		}{[]byte{byte(code >> 8), byte(code)}, CloseError{}, StatusProtocolError})
	}
	for _, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999} {
		cases = append(cases, struct {
			payload  []byte
			want     CloseError
			failCode StatusCode
		}{[]byte{byte(code >> 8), byte(code)}, CloseError{Code: StatusCode(code)}, 0})
	}
	for _, c := range cases {
		got, failCode, err := parseClosePayload(c.payload)
		if failCode != c.failCode || (err == nil) != (c.failCode == 0) || (c.failCode == 0 && got != c.want) {
			t.Errorf("% x: got %+v, %v, %v; want %+v, fail %v", c.payload, got, failCode, err, c.want, c.failCode)
		}
	}
}

func FuzzDecodeHeader(f *testing.F) {
	for _, fr := range rfcFrames {
		f.Add(fr.wire[:min(len(fr.wire), MaxHeaderLen)])
	}
	f.Add(unhex("82 7F 80 00 00 00 00 00 00 00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := DecodeHeader(b)
		if err != nil {
			return
		}
		if h.Length < 0 || n > MaxHeaderLen || n > len(b) {
			t.Fatalf("header %+v from %d bytes", h, n)
		}
		// A header that decodes re-encodes to the same bytes when its
		// length was minimally encoded.
		re := AppendHeader(nil, h)
		if len(re) == n && !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoded % x, was % x", re, b[:n])
		}
	})
}
