package he_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/he"
)

// Five hospitals set up a collective key that any three of them can use to
// decrypt. In round 1 two hospitals are offline: the other three submit
// noised updates, and the three online key holders decrypt only the sum.
// Asking them to decrypt another sum in the same round is refused, and
// with only two key holders online nothing can be decrypted.
func Example() {
	params, err := he.NewParams(he.Config{Preset: he.Compact, Parties: 5, Threshold: 3})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Identities (in a deployment: provisioned certificates' keys).
	keys := make([]ed25519.PrivateKey, 5)
	roster := make([]ed25519.PublicKey, 5)
	for i := range keys {
		roster[i], keys[i], _ = ed25519.GenerateKey(nil)
	}
	// Setup, every message relayed by the coordinator: adverts; signed
	// commitments; once every party holds all five, reveals (public-key
	// shares and sealed Shamir shares); key confirmation.
	parties := make([]*he.Party, 5)
	msgs := make([][]byte, 5)
	for i := range parties {
		parties[i], _ = he.NewParty(params, i+1, keys[i], roster)
		msgs[i] = parties[i].Advert()
	}
	for _, step := range []func(*he.Party, [][]byte) ([]byte, error){(*he.Party).Commit, (*he.Party).Reveal, (*he.Party).Finish} {
		next := make([][]byte, 5)
		for i, p := range parties {
			if next[i], err = step(p, msgs); err != nil {
				fmt.Println(err)
				return
			}
		}
		msgs = next
	}
	for _, p := range parties {
		if err := p.Confirm(msgs); err != nil {
			fmt.Println(err)
			return
		}
	}

	// Round 1: hospitals 2 and 4 are offline. Every hospital signs its
	// submission with a digest of the round's terms as it was shown them,
	// and helps decrypt only sums made under the terms it holds itself.
	online := []int{1, 3, 5}
	terms := sha256.Sum256([]byte("round 1: model v1, clip 3, noise σ 0.001 per hospital"))
	agg, _ := he.NewAggregator(params, roster, parties[0].CRS(), 1, terms)
	noise, _ := dp.NewGridGaussian(0.001, -20) // each hospital's share of the DP noise
	// What an honest sum of three updates in [−1, 1] can be: the
	// coordinator withholds any decryption outside it.
	agg.SetRange(he.Range{MaxAbs: 3, Sigma: 0.001})
	sampler, _ := dp.NewSampler(nil)
	for _, id := range online {
		update := []float64{0.1 * float64(id), -0.2, 0.05}
		sub, err := parties[id-1].Encrypt(1, terms, update, he.DPNoise(noise, sampler))
		if err != nil {
			fmt.Println(err)
			return
		}
		agg.Add(sub)
	}
	req, err := agg.Request(online)
	if err != nil {
		fmt.Println(err)
		return
	}
	var shares [][]byte
	for _, id := range online {
		sh, err := parties[id-1].DecryptShare(req, terms)
		if err != nil {
			fmt.Println(err)
			return
		}
		shares = append(shares, sh)
	}
	sum, _ := agg.Combine(shares)
	fmt.Printf("sum of 3 updates ≈ [%.2f %.2f %.2f]\n", sum[0], sum[1], sum[2])

	// The coordinator tries to have a second sum of round 1 decrypted (say,
	// one that leaves a hospital out, to learn its update by difference).
	agg2, _ := he.NewAggregator(params, roster, parties[0].CRS(), 1, terms)
	for _, id := range online {
		sub, _ := parties[id-1].Encrypt(1, terms, []float64{1, 1, 1}, he.NoNoise)
		agg2.Add(sub)
	}
	req2, _ := agg2.Request(online)
	if _, err := parties[0].DecryptShare(req2, terms); errors.Is(err, he.ErrRefused) {
		fmt.Println("second decryption in round 1: refused")
	}
	// Only two key holders online: nothing can be decrypted.
	if _, err := agg2.Request([]int{1, 3}); errors.Is(err, he.ErrTooFewDecryptors) {
		fmt.Println("two of five key holders online: too few to decrypt")
	}
	// Output:
	// sum of 3 updates ≈ [0.90 -0.60 0.15]
	// second decryption in round 1: refused
	// two of five key holders online: too few to decrypt
}
