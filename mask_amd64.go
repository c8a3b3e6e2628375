//go:build !purego

package websocket

// useMaskAsm reports whether maskWords may call maskAsm: whether the CPU
// has AVX2 and the operating system saves the 256-bit registers.
var useMaskAsm = hasAVX2()

// maskAsmMin is the shortest payload maskWords gives to maskAsm. maskAsm
// needs 32 bytes, but its fixed costs (the call, the key vectors, the two
// edge vectors) leave it no faster than maskGo up to about 150 bytes.
const maskAsmMin = 192

// maskAsm is maskGo with AVX2: a 32-byte store where maskGo stores 8 makes
// it about twice as fast from 1 KiB up, on a par with copy. len(b) must be
// at least 32. Call it only if useMaskAsm.
//
//go:noescape
func maskAsm(b []byte, key uint32) uint32

// hasAVX2 asks the CPU directly: the standard library keeps its feature
// flags in internal/cpu, and the root module imports nothing else. So
// GODEBUG=cpu.avx2=off does not reach it; build with -tags purego to rule
// the assembly out.
func hasAVX2() bool {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const osxsave, avx = 1 << 27, 1 << 28
	if ecx1&(osxsave|avx) != osxsave|avx {
		return false
	}
	// XCR0 bits 1 and 2: the OS saves the SSE and the AVX register state.
	// Without both, touching a YMM register faults.
	if xgetbv0()&6 != 6 {
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	const avx2 = 1 << 5
	return ebx7&avx2 != 0
}

// cpuid executes CPUID with EAX=leaf and ECX=subleaf.
func cpuid(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)

// xgetbv0 returns the low half of extended control register XCR0. Call it
// only when CPUID reports OSXSAVE.
func xgetbv0() uint32
