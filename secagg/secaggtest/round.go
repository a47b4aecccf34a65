package secaggtest

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fl-secure/fl-secure/secagg"
)

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

// String names the phase as the simulate table prints it.
func (p Phase) String() string {
	return [...]string{"stay", "before-advert", "after-advert", "after-shares", "after-masked-input", "after-consistency"}[p]
}

// Result is what Drive observed.
type Result struct {
	Sum        []uint64 // nil if the round failed
	Survivors  []uint32 // U3: the clients whose inputs are in Sum
	Err        error    // what ended the round, with every client refusal
	ClientTime []time.Duration
	ServerTime time.Duration
	// ClientBytes is what each client sent, encoded.
	ClientBytes []int64
}

// Drive drives one honest round in memory, at the engine level (no
// transport, no protocol package): each message is encoded and decoded on
// its way, as a transport would, and each party timed. The client with id
// i+1 has identity keys[i], input inputs[i] and randomness rand(i)
// (crypto/rand if rand is nil), and drops out as drop[i] says.

func Drive(p secagg.Params, keys []ed25519.PrivateKey, roster *secagg.Roster, inputs [][]uint64, drop []Phase, rand func(i int) io.Reader) Result {
	if len(keys) != p.Clients || len(inputs) != p.Clients || len(drop) != p.Clients {
		return Result{Err: fmt.Errorf("secaggtest: %d keys, %d inputs, %d dropout entries for %d clients", len(keys), len(inputs), len(drop), p.Clients)}
	}
	res := Result{ClientTime: make([]time.Duration, p.Clients), ClientBytes: make([]int64, p.Clients)}
	server := func(f func() error) error {
		t0 := time.Now()
		err := f()
		res.ServerTime += time.Since(t0)
		return err
	}
	client := func(i int, f func() error) error {
		t0 := time.Now()
		err := f()
		res.ClientTime[i] += time.Since(t0)
		return err
	}
	var srv *secagg.Server
	if err := server(func() (err error) { srv, err = secagg.NewServer(p, roster); return }); err != nil {
		return Result{Err: err}
	}
	clients := make([]*secagg.Client, p.Clients)
	for i := range clients {
		var r io.Reader
		if rand != nil {
			r = rand(i)
		}
		var err error
		if clients[i], err = secagg.NewClient(p, uint32(i+1), keys[i], roster, r); err != nil {
			return Result{Err: err}
		}
	}
	alive := func(i int, after Phase) bool { return drop[i] == Stay || drop[i] > after }
	var refusals []error
	fail := func(e error) Result {
		res.Err = errors.Join(append([]error{e}, refusals...)...)
		return res
	}

	// Round 0: AdvertiseKeys.
	for i, c := range clients {
		if !alive(i, BeforeAdvert) {
			continue
		}
		var b []byte
		if err := client(i, func() error { return send(&b, c.AdvertiseKeys) }); err != nil {
			return fail(err)
		}
		res.ClientBytes[i] += int64(len(b))
		if err := server(func() error { return recv(b, new(secagg.Advert), srv.HandleAdvert) }); err != nil {
			return fail(err)
		}
	}
	var list []byte
	if err := server(func() error { return send(&list, srv.AdvertList) }); err != nil {
		return fail(err)
	}

	// Round 1: ShareKeys.
	for i, c := range clients {
		if !alive(i, AfterAdvert) {
			continue
		}
		var b []byte
		err := client(i, func() error {
			return recvSend(list, new(secagg.AdvertList), &b, c.ShareKeys)
		})
		if err != nil {
			refusals = append(refusals, err)
			continue
		}
		res.ClientBytes[i] += int64(len(b))
		if err := server(func() error { return recv(b, new(secagg.Shares), srv.HandleShares) }); err != nil {
			return fail(err)
		}
	}
	fwd := make(map[uint32][]byte)
	err := server(func() error {
		m, err := srv.ForwardedShares()
		if err != nil {
			return err
		}
		for id, f := range m {
			if fwd[id], err = f.MarshalBinary(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}

	// Round 2: MaskedInputCollection.
	for i, c := range clients {
		f, ok := fwd[c.ID()]
		if !ok || !alive(i, AfterShares) {
			continue
		}
		var b []byte
		err := client(i, func() error {
			return recvSend(f, new(secagg.ForwardedShares), &b, func(m *secagg.ForwardedShares) (*secagg.MaskedInput, error) {
				return c.MaskInput(m, inputs[i])
			})
		})
		if err != nil {
			refusals = append(refusals, err)
			continue
		}
		res.ClientBytes[i] += int64(len(b))
		if err := server(func() error { return srv.HandleEncodedMaskedInput(b) }); err != nil {
			return fail(err)
		}
	}
	var creq []byte
	if err := server(func() error { return send(&creq, srv.ConsistencyRequest) }); err != nil {
		return fail(err)
	}

	// Round 3: ConsistencyCheck.
	res.Survivors = srv.Survivors()
	for _, id := range res.Survivors {
		i := int(id - 1)
		if !alive(i, AfterMaskedInput) {
			continue
		}
		var b []byte
		if err := client(i, func() error {
			return recvSend(creq, new(secagg.ConsistencyRequest), &b, clients[i].CheckConsistency)
		}); err != nil {
			refusals = append(refusals, err)
			continue
		}
		res.ClientBytes[i] += int64(len(b))
		if err := server(func() error { return recv(b, new(secagg.ConsistencySignature), srv.HandleSignature) }); err != nil {
			return fail(err)
		}
	}
	var ureq []byte
	var signers []secagg.Signature
	if err := server(func() error {
		return send(&ureq, func() (*secagg.UnmaskRequest, error) {
			r, err := srv.UnmaskRequest()
			if err == nil {
				signers = r.Signatures
			}
			return r, err
		})
	}); err != nil {
		return fail(err)
	}

	// Round 4: Unmasking.
	for _, s := range signers {
		i := int(s.Signer - 1)
		if !alive(i, AfterConsistency) {
			continue
		}
		var b []byte
		if err := client(i, func() error {
			return recvSend(ureq, new(secagg.UnmaskRequest), &b, clients[i].Unmask)
		}); err != nil {
			refusals = append(refusals, err)
			continue
		}
		res.ClientBytes[i] += int64(len(b))
		if err := server(func() error { return recv(b, new(secagg.UnmaskResponse), srv.HandleUnmask) }); err != nil {
			return fail(err)
		}
	}
	if err := server(func() (err error) { res.Sum, err = srv.Aggregate(); return }); err != nil {
		return fail(err)
	}
	return res
}

type marshaler interface{ MarshalBinary() ([]byte, error) }

// send encodes what f returns into *out.
func send[M marshaler](out *[]byte, f func() (M, error)) error {
	m, err := f()
	if err != nil {
		return err
	}
	*out, err = m.MarshalBinary()
	return err
}

// recv decodes b into m and hands it to f.
func recv[M interface{ UnmarshalBinary([]byte) error }](b []byte, m M, f func(M) error) error {
	if err := m.UnmarshalBinary(b); err != nil {
		return err
	}
	return f(m)
}

// recvSend decodes b into m, hands it to f and encodes the answer into *out.
func recvSend[M interface{ UnmarshalBinary([]byte) error }, R marshaler](b []byte, m M, out *[]byte, f func(M) (R, error)) error {
	if err := m.UnmarshalBinary(b); err != nil {
		return err
	}
	return send(out, func() (R, error) { return f(m) })
}
