// Package dptest holds deterministic helpers for testing dp: a seeded
// randomness source. It is for tests and known-answer tests only; production
// code takes its randomness from crypto/rand.
package dptest

import (
	"encoding/binary"
	"io"

	"github.com/fl-secure/fl-secure/internal/prg"
)

// Rand returns a deterministic randomness source: the AES-CTR keystream of
// seed. For known-answer tests only.
func Rand(seed uint64) io.Reader {
	var k [prg.KeySize]byte
	binary.BigEndian.PutUint64(k[:], seed)
	k[15] = 0xd9
	return prg.NewReader(&k)
}
