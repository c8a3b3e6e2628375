//go:build !amd64 || purego

package websocket

// There is no assembly masker here: maskWords always uses maskGo.
const (
	useMaskAsm = false
	maskAsmMin = 0
)

func maskAsm(b []byte, key uint32) uint32 {
	panic("websocket: no assembly masker on this platform")
}
