// Package secaggtest drives secagg's engines in memory, below any transport:
// one round with a chosen dropout pattern (Drive), rounds with random
// dropouts and sums checked against the plaintext (Simulate, behind
// fl-secure bench's engine-level SecAgg+ scenarios), and deterministic
// helpers for tests — a seeded randomness source and identities. Seeded
// sources are for tests and known-answer tests only: production code takes
// its randomness from crypto/rand. Federations over sessions (the
// Coordinator and Sites) are protocol's.
package secaggtest

import (
	"crypto/ed25519"
	"io"

	"github.com/fl-secure/fl-secure/internal/prg"
	"github.com/fl-secure/fl-secure/secagg"
)

// Rand returns a deterministic randomness source: the AES-CTR keystream of
// seed. For known-answer tests only.
func Rand(seed uint64) io.Reader { return prg.Seeded(seed, 0) }

// Identities returns n deterministic Ed25519 identities and their roster.
func Identities(n int, seed uint64) ([]ed25519.PrivateKey, *secagg.Roster) {
	r := Rand(seed ^ 0x1d)
	keys := make([]ed25519.PrivateKey, n)
	roster := make([]ed25519.PublicKey, n)
	for i := range keys {
		var s [ed25519.SeedSize]byte
		io.ReadFull(r, s[:])
		keys[i] = ed25519.NewKeyFromSeed(s[:])
		roster[i] = keys[i].Public().(ed25519.PublicKey)
	}
	rr, err := secagg.NewRoster(roster)
	if err != nil {
		panic("secaggtest: " + err.Error())
	}
	return keys, rr
}

// Run drives one honest round in memory with deterministic identities and
// randomness derived from seed: the client with id i+1 has input inputs[i]
// and drops out as drop[i] says.
func Run(p secagg.Params, inputs [][]uint64, drop []Phase, seed uint64) Result {
	keys, roster := Identities(p.Clients, seed)
	return Drive(p, keys, roster, inputs, drop, func(i int) io.Reader {
		return Rand(seed*1_000_003 + uint64(i))
	})
}
