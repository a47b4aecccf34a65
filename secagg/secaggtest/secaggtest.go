// Package secaggtest holds deterministic helpers for testing secagg: a seeded
// randomness source and an in-memory driver that runs one round with a
// chosen dropout pattern. They are for tests and known-answer tests only:
// production code takes its randomness from crypto/rand.
package secaggtest

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/fl-secure/fl-secure/internal/prg"
	"github.com/fl-secure/fl-secure/secagg"
)

// Rand returns a deterministic randomness source: the AES-CTR keystream of
// seed. For known-answer tests only.
func Rand(seed uint64) io.Reader {
	var k [prg.KeySize]byte
	binary.BigEndian.PutUint64(k[:], seed)
	return prg.NewReader(&k)
}

// Identities returns n deterministic Ed25519 identities and their roster.
func Identities(n int, seed uint64) ([]ed25519.PrivateKey, []ed25519.PublicKey) {
	r := Rand(seed ^ 0x1d)
	keys := make([]ed25519.PrivateKey, n)
	roster := make([]ed25519.PublicKey, n)
	for i := range keys {
		var s [ed25519.SeedSize]byte
		io.ReadFull(r, s[:])
		keys[i] = ed25519.NewKeyFromSeed(s[:])
		roster[i] = keys[i].Public().(ed25519.PublicKey)
	}
	return keys, roster
}

// Phase names the step after which a client drops out.
type Phase int

// A client that drops "after" a phase sends that phase's message and nothing
// later. Stay never drops.
const (
	Stay Phase = iota
	BeforeAdvert
	AfterAdvert
	AfterShares
	AfterMaskedInput
	AfterConsistency
)

// Result is what Run observed.
type Result struct {
	Sum       []uint64 // nil if the round failed
	Survivors []uint32
	Err       error // the error that ended the round, if any
}

// Run drives one honest round in memory: clients[i] has id i+1 and input
// inputs[i]; drop[i] says when it drops out. Every message is encoded and
// decoded on the way, as a transport would. Errors from individual clients
// that are below-threshold refusals are collected as the round's error.
func Run(p secagg.Params, inputs [][]uint64, drop []Phase, seed uint64) Result {
	keys, roster := Identities(p.Clients, seed)
	srv, err := secagg.NewServer(p, roster)
	if err != nil {
		return Result{Err: err}
	}
	clients := make([]*secagg.Client, p.Clients)
	for i := range clients {
		clients[i], err = secagg.NewClient(p, uint32(i+1), keys[i], roster, Rand(seed*1000+uint64(i)))
		if err != nil {
			return Result{Err: err}
		}
	}
	alive := func(i int, after Phase) bool { return drop[i] == Stay || drop[i] > after }
	var errs []error
	fail := func(e error) Result { return Result{Err: errors.Join(append([]error{e}, errs...)...)} }

	for i, c := range clients {
		if !alive(i, BeforeAdvert) {
			continue
		}
		a, err := c.AdvertiseKeys()
		if err != nil {
			return fail(err)
		}
		if err := srv.HandleAdvert(roundTrip(a, new(secagg.Advert))); err != nil {
			return fail(err)
		}
	}
	list, err := srv.AdvertList()
	if err != nil {
		return fail(err)
	}
	for i, c := range clients {
		if !alive(i, AfterAdvert) {
			continue
		}
		sh, err := c.ShareKeys(roundTrip(list, new(secagg.AdvertList)))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := srv.HandleShares(roundTrip(sh, new(secagg.Shares))); err != nil {
			return fail(err)
		}
	}
	fwd, err := srv.ForwardedShares()
	if err != nil {
		return fail(err)
	}
	for i, c := range clients {
		f, ok := fwd[c.ID()]
		if !ok || !alive(i, AfterShares) {
			continue
		}
		m, err := c.MaskInput(roundTrip(f, new(secagg.ForwardedShares)), inputs[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := srv.HandleMaskedInput(roundTrip(m, new(secagg.MaskedInput))); err != nil {
			return fail(err)
		}
	}
	creq, err := srv.ConsistencyRequest()
	if err != nil {
		return fail(err)
	}
	u3 := creq.Survivors
	for _, id := range u3 {
		i := int(id - 1)
		if !alive(i, AfterMaskedInput) {
			continue
		}
		sig, err := clients[i].CheckConsistency(roundTrip(creq, new(secagg.ConsistencyRequest)))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := srv.HandleSignature(roundTrip(sig, new(secagg.ConsistencySignature))); err != nil {
			return fail(err)
		}
	}
	ureq, err := srv.UnmaskRequest()
	if err != nil {
		return fail(err)
	}
	for _, s := range ureq.Signatures {
		i := int(s.Signer - 1)
		if !alive(i, AfterConsistency) {
			continue
		}
		r, err := clients[i].Unmask(roundTrip(ureq, new(secagg.UnmaskRequest)))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := srv.HandleUnmask(roundTrip(r, new(secagg.UnmaskResponse))); err != nil {
			return fail(err)
		}
	}
	sum, err := srv.Aggregate()
	if err != nil {
		return fail(err)
	}
	return Result{Sum: sum, Survivors: u3}
}

type message interface {
	MarshalBinary() ([]byte, error)
	UnmarshalBinary([]byte) error
}

func roundTrip[M message](in message, out M) M {
	b, err := in.MarshalBinary()
	if err != nil {
		panic(fmt.Sprintf("secaggtest: encoding %T: %v", in, err))
	}
	if err := out.UnmarshalBinary(b); err != nil {
		panic(fmt.Sprintf("secaggtest: decoding %T: %v", out, err))
	}
	return out
}
