package wsjson

import (
	"bytes"
	"testing"
)

// A buffer that grew past maxPooledBuffer is not kept; smaller ones are.
func TestPoolDropsLargeBuffers(t *testing.T) {
	for range 20 {
		big := getBuffer()
		big.Grow(maxPooledBuffer + 1)
		putBuffer(big)
		if b := getBuffer(); b == big {
			t.Fatalf("a %d-byte buffer came back from the pool", big.Cap())
		}
	}
	small := new(bytes.Buffer)
	small.WriteString("left over")
	putBuffer(small)
	if b := getBuffer(); b.Len() != 0 {
		t.Fatalf("a pooled buffer holds %q", b.String())
	}
}
