//go:build amd64 && !purego

#include "textflag.h"

// func addWords32AVX2(d *uint64, b *byte, n int)
// d[i] += zero-extended little-endian uint32 at b[4i:], for i < n; n is a
// positive multiple of 8.
TEXT ·addWords32AVX2(SB), NOSPLIT, $0-24
	MOVQ d+0(FP), DI
	MOVQ b+8(FP), SI
	MOVQ n+16(FP), CX

addloop:
	VPMOVZXDQ (SI), Y0
	VPMOVZXDQ 16(SI), Y1
	VPADDQ    (DI), Y0, Y0
	VPADDQ    32(DI), Y1, Y1
	VMOVDQU   Y0, (DI)
	VMOVDQU   Y1, 32(DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	SUBQ      $8, CX
	JNZ       addloop
	VZEROUPPER
	RET

// func subWords32AVX2(d *uint64, b *byte, n int)
// d[i] -= zero-extended little-endian uint32 at b[4i:], for i < n; n is a
// positive multiple of 8.
TEXT ·subWords32AVX2(SB), NOSPLIT, $0-24
	MOVQ d+0(FP), DI
	MOVQ b+8(FP), SI
	MOVQ n+16(FP), CX

subloop:
	VPMOVZXDQ (SI), Y0
	VPMOVZXDQ 16(SI), Y1
	VMOVDQU   (DI), Y2
	VMOVDQU   32(DI), Y3
	VPSUBQ    Y0, Y2, Y2
	VPSUBQ    Y1, Y3, Y3
	VMOVDQU   Y2, (DI)
	VMOVDQU   Y3, 32(DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	SUBQ      $8, CX
	JNZ       subloop
	VZEROUPPER
	RET
