package secagg

import (
	"crypto/ecdh"
	"crypto/subtle"
	"fmt"
	"slices"

	"filippo.io/edwards25519"

	"github.com/fl-secure/fl-secure/internal/field"
	"github.com/fl-secure/fl-secure/internal/prg"
)

// NeighboursOf exposes the server's neighbour graph to the external tests,
// which predict from it whether a dropout pattern lets a round finish.
func (s *Server) NeighboursOf(id uint32) []uint32 { return s.g.neighbours(id) }

// Ring returns the clients in the order of their positions on the round's
// Harary graph (nil before AdvertList), so that attack tests can choose
// clients by position.
func (s *Server) Ring() []uint32 { return slices.Clone(s.g.order) }

// LeakMaskKey returns the client's mask-agreement key, as a client that
// colludes with the coordinator would hand it over. It must be called before
// Unmask, which forgets the key.
func (c *Client) LeakMaskKey() *ecdh.PrivateKey { return c.maskPriv }

// RecoverSum plays a coordinator at the end of an attack. It holds the
// masked inputs of the target clients, every share revealed to it in
// revealed (from any number of survivor-set views) and the mask keys that
// colluding clients leaked. It reconstructs what it can and returns
// Σ_{u∈targets} x_u over Z_{2^Bits}, or an error naming the first mask it
// cannot remove. Every client of the advert list is assumed to have shared
// keys, so each target masked against all its neighbours.
func RecoverSum(p Params, list *AdvertList, targets []uint32, masked map[uint32]*MaskedInput, revealed []*UnmaskResponse, leaked map[uint32]*ecdh.PrivateKey) ([]uint64, error) {
	ids := make([]uint32, len(list.Adverts))
	adverts := make(map[uint32]*Advert, len(ids))
	for i := range list.Adverts {
		ids[i] = list.Adverts[i].Sender
		adverts[ids[i]] = &list.Adverts[i]
	}
	g := newGraph(ids, p.Degree, advertDigest(&p.Context, p.Round, list.Adverts))

	type key struct {
		owner uint32
		kind  ShareKind
	}
	shares := make(map[key]map[uint32]field.Share)
	for _, r := range revealed {
		for _, sh := range r.Shares {
			k := key{sh.Owner, sh.Kind}
			if shares[k] == nil {
				shares[k] = make(map[uint32]field.Share)
			}
			var y edwards25519.Scalar
			if _, err := y.SetCanonicalBytes(sh.Value[:]); err != nil {
				return nil, err
			}
			shares[k][r.Sender] = field.Share{X: r.Sender, Y: y}
		}
	}
	secret := func(owner uint32, kind ShareKind) (*edwards25519.Scalar, bool) {
		m := shares[key{owner, kind}]
		if len(m) < p.Threshold {
			return nil, false
		}
		var list []field.Share
		for _, h := range sortedKeys(m) {
			list = append(list, m[h])
		}
		s, err := field.Combine(list[:p.Threshold])
		return s, err == nil
	}
	maskKey := func(v uint32) *ecdh.PrivateKey {
		if k, ok := leaked[v]; ok {
			return k
		}
		sigma, ok := secret(v, MaskKeyShare)
		if !ok {
			return nil
		}
		k := maskPrivateKey(sigma, p.Round, v)
		if subtle.ConstantTimeCompare(k.PublicKey().Bytes(), adverts[v].MaskKey[:]) != 1 {
			return nil
		}
		return k
	}

	sum := make([]uint64, p.Length)
	var masks []prg.Mask
	for _, u := range targets {
		y, ok := masked[u]
		if !ok {
			return nil, fmt.Errorf("no masked input of client %d", u)
		}
		for i, x := range y.Vector {
			sum[i] += x
		}
		beta, ok := secret(u, SelfShare)
		if !ok {
			return nil, fmt.Errorf("fewer than %d self-mask shares of client %d", p.Threshold, u)
		}
		if c := selfCommit(beta, p.Round, u); subtle.ConstantTimeCompare(c[:], adverts[u].SelfCommit[:]) != 1 {
			return nil, fmt.Errorf("self-mask shares of client %d do not match its commitment", u)
		}
		masks = append(masks, prg.Mask{Key: selfSeed(beta, p.Round, u), Subtract: true})
		for _, w := range g.neighbours(u) {
			if slices.Contains(targets, w) {
				continue // cancels inside the sum
			}
			var seed [prg.KeySize]byte
			var err error
			if k := maskKey(w); k != nil {
				peer, _ := ecdh.X25519().NewPublicKey(adverts[u].MaskKey[:])
				seed, err = pairSeed(k, peer, p.Round, w, u)
			} else if k := maskKey(u); k != nil {
				peer, _ := ecdh.X25519().NewPublicKey(adverts[w].MaskKey[:])
				seed, err = pairSeed(k, peer, p.Round, u, w)
			} else {
				return nil, fmt.Errorf("the pairwise mask of clients %d and %d cannot be removed", u, w)
			}
			if err != nil {
				return nil, err
			}
			// u added +PRG(s_uw) if u < w.
			masks = append(masks, prg.Mask{Key: seed, Subtract: u < w})
		}
	}
	prg.ApplyParallel(sum, p.Bits, masks)
	for i := range sum {
		sum[i] &= ringMask(p.Bits)
	}
	return sum, nil
}
