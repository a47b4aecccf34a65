// Package secaggtest holds deterministic helpers for testing secagg: a seeded
// randomness source, deterministic identities, and an in-memory round with a
// chosen dropout pattern. They are for tests and known-answer tests only:
// production code takes its randomness from crypto/rand.
package secaggtest

import (
	"crypto/ed25519"
	"io"

	"github.com/fl-secure/fl-secure/internal/localround"
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

// Phase says when a client drops out.
type Phase = localround.Phase

// Dropout phases.
const (
	Stay             = localround.Stay
	BeforeAdvert     = localround.BeforeAdvert
	AfterAdvert      = localround.AfterAdvert
	AfterShares      = localround.AfterShares
	AfterMaskedInput = localround.AfterMaskedInput
	AfterConsistency = localround.AfterConsistency
)

// Result is what Run observed.
type Result = localround.Result

// Run drives one honest round in memory with deterministic identities and
// randomness derived from seed: the client with id i+1 has input inputs[i]
// and drops out as drop[i] says.
func Run(p secagg.Params, inputs [][]uint64, drop []Phase, seed uint64) Result {
	keys, roster := Identities(p.Clients, seed)
	return localround.Run(p, keys, roster, inputs, drop, func(i int) io.Reader {
		return Rand(seed*1_000_003 + uint64(i))
	})
}
