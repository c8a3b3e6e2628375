//go:build !purego

#include "textflag.h"

// func maskAsm(b []byte, key uint32) uint32
//
// The payload is masked 32 bytes at a time with the key broadcast across
// a YMM register. Two things decide the speed:
//
//   - Stores must not straddle cache lines. b often starts at an odd
//     place (after a frame header, say), so the main loop starts at the
//     first 32-byte boundary inside b and has every store aligned; with
//     unaligned stores 1 KiB took twice as long.
//   - A load must not partly overlap a store still in flight, or it stalls
//     until that store completes. The bytes before the first boundary and
//     after the last whole vector are covered by two unaligned vectors, at
//     b[0:32] and b[len-32:len], which overlap the aligned ones. Both are
//     loaded and masked from the original bytes before the loop stores
//     anything, and stored after it: where they overlap the loop's vectors
//     they write the same masked bytes again.
//
// This is why len(b) must be at least 32.
TEXT ·maskAsm(SB), NOSPLIT, $0-36
	MOVQ b_base+0(FP), DI
	MOVQ b_len+8(FP), BX
	MOVL key+24(FP), AX
	MOVQ DI, R8                // R8: start of b
	LEAQ (DI)(BX*1), R9        // R9: end of b

	// Y5: b[0:32] masked. It starts at payload offset 0, so the key
	// applies as given.
	MOVQ AX, X0
	VPBROADCASTD X0, Y0
	VPXOR (R8), Y0, Y5

	// The returned key is the key rotated right by len(b)%4 bytes, which
	// is also the key for b[len-32:], as 32 is a multiple of four.
	// Y6: b[len-32:len] masked.
	MOVL BX, CX
	ANDL $3, CX
	SHLL $3, CX
	MOVL AX, DX
	RORL CX, DX
	MOVL DX, ret+32(FP)
	MOVQ DX, X6
	VPBROADCASTD X6, Y6
	VPXOR -32(R9), Y6, Y6

	// Advance DI by h = -DI & 31 bytes, to a 32-byte boundary, and rotate
	// the key by h%4 bytes to match.
	MOVQ DI, CX
	NEGQ CX
	ANDQ $31, CX
	ADDQ CX, DI
	SUBQ CX, BX
	ANDL $3, CX
	SHLL $3, CX
	RORL CX, AX
	MOVQ AX, X0
	VPBROADCASTD X0, Y0

	// Four aligned vectors per iteration while at least 128 bytes remain,
	// then one at a time; fewer than 32 left over are Y6's.
	CMPQ BX, $128
	JB   vector
block:
	VPXOR   (DI), Y0, Y1
	VPXOR   32(DI), Y0, Y2
	VPXOR   64(DI), Y0, Y3
	VPXOR   96(DI), Y0, Y4
	VMOVDQU Y1, (DI)
	VMOVDQU Y2, 32(DI)
	VMOVDQU Y3, 64(DI)
	VMOVDQU Y4, 96(DI)
	ADDQ    $128, DI
	SUBQ    $128, BX
	CMPQ    BX, $128
	JAE     block

vector:
	CMPQ    BX, $32
	JB      edges
	VPXOR   (DI), Y0, Y1
	VMOVDQU Y1, (DI)
	ADDQ    $32, DI
	SUBQ    $32, BX
	JMP     vector

edges:
	VMOVDQU Y5, (R8)
	VMOVDQU Y6, -32(R9)

	// Clear the upper halves of the YMM registers; SSE code running
	// after us would otherwise pay for their dirty state.
	VZEROUPPER
	RET

// func cpuid(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL subleaf+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func xgetbv0() uint32
TEXT ·xgetbv0(SB), NOSPLIT, $0-4
	XORL CX, CX
	XGETBV
	MOVL AX, ret+0(FP)
	RET
