// Package dptest holds deterministic helpers for testing dp: a seeded
// randomness source. It is for tests and known-answer tests only; production
// code takes its randomness from crypto/rand.
package dptest

import (
	"io"

	"github.com/fl-secure/fl-secure/internal/prg"
)

// Rand returns a deterministic randomness source: the AES-CTR keystream of
// seed. For known-answer tests only.
func Rand(seed uint64) io.Reader { return prg.Seeded(seed, 0xd9) }
