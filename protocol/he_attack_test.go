package protocol

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tuneinsight/lattigo/v5/he/hefloat"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// forgeHESubmission rewrites an honest he submission so that every
// ciphertext is (0, 2^(logScale+8)) and signs it again with the site's
// identity key: what a malicious hospital can send, since nothing proves a
// ciphertext was formed by encryption. The format is package he's
// submission encoding (header, round, the round's 32-byte context, party,
// length, count, ciphertexts), rebuilt here from its parts. It runs on the
// site's goroutine, so it reports trouble with t.Error and leaves the
// payload.
func forgeHESubmission(t *testing.T, s *Site, payload []byte) []byte {
	params := s.he.Params()
	lp, err := hefloat.NewParametersFromLiteral(hefloat.ParametersLiteral{LogN: heNetPreset.LogN, LogQ: heNetPreset.LogQ, LogDefaultScale: 40})
	if err != nil {
		t.Error(err)
		return payload
	}
	moduli := lp.Q()
	n := lp.N()
	body := append([]byte(nil), payload[:len(payload)-ed25519.SignatureSize]...)
	const head = 8 + 8 + 32 + 4 + 4 + 4
	k := int(binary.LittleEndian.Uint32(body[head-4 : head]))
	polyLen := n * len(moduli) * 8
	if len(body) != head+2*k*polyLen {
		t.Errorf("submission of %d bytes for %d ciphertexts", len(body), k)
		return payload
	}
	big2 := new(big.Int).Lsh(big.NewInt(1), uint(params.LogScale()+8))
	off := head
	for c := 0; c < k; c++ {
		clear(body[off : off+polyLen]) // c0 = 0
		off += polyLen
		for i, q := range moduli { // c1 = 2^(logScale+8), the same in the NTT domain
			r := new(big.Int).Mod(big2, new(big.Int).SetUint64(q)).Uint64()
			for j := 0; j < n; j++ {
				binary.LittleEndian.PutUint64(body[off+(i*n+j)*8:], r)
			}
		}
		off += polyLen
	}
	crs := s.he.CRS()
	h := sha256.New()
	h.Write([]byte("fl-secure/he/v3 submission\x00"))
	h.Write(crs[:])
	h.Write(body[8:])
	return append(body, ed25519.Sign(s.identity, h.Sum(nil))...)
}

// A hospital submits a malformed but correctly signed ciphertext in every
// training round. Decrypted, its sum would hold 256·s, and every site
// receives the new model: the collective key would be public. The
// coordinator's range check refuses each sum: no model is published, no
// site receives one, and the log names the round.
func TestNetworkHEMalformedCiphertextRefused(t *testing.T) {
	const n = 5
	f, logs := newLoggedFederation(t, n, CoordinatorConfig{Mode: HE, Level: dp.ClientLevel, Rounds: 2, Epsilon: 3, Delta: 1e-5,
		Clip: 1, LearningRate: 1, PhaseTimeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cfgs []SiteConfig
	var bad *Site
	forged := 0
	for i := 1; i <= n; i++ {
		c := f.siteConfig(i)
		c.ModelOut = filepath.Join(t.TempDir(), "model.npy")
		if i == n {
			c.misbehave = func(st *wire.RoundStart, m *wire.SiteMessage) *wire.SiteMessage {
				if e := m.GetEngine(); e != nil && e.Phase == phaseHESubmit && st.Kind == wire.RoundStart_TRAIN {
					forged++
					return engineMsg(e.Round, e.Phase, forgeHESubmission(t, bad, e.Payload))
				}
				return m
			}
		}
		cfgs = append(cfgs, c)
	}
	sites, wait := runSites(t, ctx, cfgs)
	bad = sites[n-1]
	sum, err := f.coord.Run(ctx)
	cancel()
	wait()
	if forged == 0 {
		t.Fatal("the malicious site never submitted")
	}
	if err == nil && okRounds(sum) > 0 {
		t.Fatalf("a round with a malformed ciphertext was published: %+v", sum.Rounds)
	}
	t.Logf("run: %v", err)
	if err != nil && !strings.Contains(err.Error(), "out of range") {
		t.Errorf("the run ended for another reason: %v", err)
	}
	for i, s := range sites {
		if s.rounds != 0 {
			t.Errorf("site %d completed %d rounds", i+1, s.rounds)
		}
		if _, err := os.Stat(s.cfg.ModelOut); err == nil {
			t.Errorf("site %d received a model", i+1)
		}
	}
	refused := logs.lines(`msg="decrypted sum refused`, "round=1 ")
	if len(refused) == 0 {
		t.Errorf("no refusal naming round 1 logged:\n%s", logs)
	} else {
		t.Logf("coordinator: %s", refused[0])
	}
}

// An honest client-level he run passes the tightest range the coordinator
// sets (c·Clip, DP noise, the grid): no false alarm.
func TestNetworkHEClientLevel(t *testing.T) {
	const n = 5
	f := newFederation(t, n, CoordinatorConfig{Mode: HE, Level: dp.ClientLevel, Rounds: 3, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cfgs []SiteConfig
	for i := 1; i <= n; i++ {
		cfgs = append(cfgs, f.siteConfig(i))
	}
	_, wait := runSites(t, ctx, cfgs)
	sum, err := f.coord.Run(ctx)
	cancel()
	wait()
	if err != nil {
		t.Fatal(err)
	}
	if okRounds(sum) != 3 {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
}

// The minimum number of contributors a site's threshold key needs is fixed
// at the key ceremony (the largest of the sites' and the coordinator's
// values then) and read from the saved state afterwards: a RoundStart that
// announces a smaller one, or none, changes nothing.
func TestNetworkHEMinContributorsFixedAtSetup(t *testing.T) {
	const n = 5
	f := newFederation(t, n, CoordinatorConfig{Mode: HE, Rounds: 1, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1, MinCohort: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cfgs []SiteConfig
	for i := 1; i <= n; i++ {
		cfgs = append(cfgs, f.siteConfig(i))
	}
	sites, wait := runSites(t, ctx, cfgs)
	if _, err := f.coord.Run(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	wait()
	for i, s := range sites {
		s.he = nil
		st := &wire.RoundStart{HePreset: heNetPreset.Name, HeMaxAbs: heNetMaxAbs, Sites: n, MinCohort: 2}
		p, params, err := s.heParty(st)
		if err != nil {
			t.Fatal(err)
		}
		if p.MinContributors() != 4 || params.Config().MinContributors != 4 {
			t.Errorf("site %d: restored with MinContributors %d, want 4 from the key ceremony", i+1, p.MinContributors())
		}
	}
}

// A site whose signed reveal (its public-key share and sealed Shamir
// shares) differs from the commitment it signed before anyone revealed —
// the rogue-key attack, choosing its share after seeing the others' — is
// named by the coordinator, and the key ceremony stops before any site
// sees that reveal.
func TestNetworkHERogueRevealNamed(t *testing.T) {
	const n = 4
	f, logs := newLoggedFederation(t, n, CoordinatorConfig{Mode: HE, Rounds: 1, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
		PhaseTimeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cfgs []SiteConfig
	var bad *Site
	for i := 1; i <= n; i++ {
		c := f.siteConfig(i)
		if i == 3 {
			c.misbehave = func(st *wire.RoundStart, m *wire.SiteMessage) *wire.SiteMessage {
				if e := m.GetEngine(); e != nil && e.Phase == phaseHESetup {
					return engineMsg(e.Round, e.Phase, resignReveal(t, bad, e.Payload))
				}
				return m
			}
		}
		cfgs = append(cfgs, c)
	}
	sites, wait := runSites(t, ctx, cfgs)
	bad = sites[2]
	_, err := f.coord.Run(ctx)
	cancel()
	wait()
	if err == nil || !strings.Contains(err.Error(), "site(s) [3]") {
		t.Fatalf("run: %v, want the key ceremony to fail naming site 3", err)
	}
	t.Logf("run: %v", err)
	if len(logs.lines(`msg="site misbehaved"`, "site=3")) == 0 {
		t.Errorf("site 3 not logged as misbehaving:\n%s", logs)
	}
	for i, s := range sites {
		if s.he != nil {
			t.Errorf("site %d finished the key ceremony", i+1)
		}
	}
}

// resignReveal changes one byte of the site's public-key share in its
// reveal and signs the result again with its identity key (package he's
// reveal signature, rebuilt here).
func resignReveal(t *testing.T, s *Site, payload []byte) []byte {
	cfg := s.heSetup.Params().Config()
	body := append([]byte(nil), payload[:len(payload)-ed25519.SignatureSize]...)
	body[100] ^= 1
	crs := s.heSetup.CRS()
	var hdr [28]byte
	hdr[0] = cfg.Preset.ID
	binary.LittleEndian.PutUint32(hdr[4:], uint32(cfg.Parties))
	binary.LittleEndian.PutUint32(hdr[8:], uint32(cfg.Threshold))
	binary.LittleEndian.PutUint64(hdr[12:], math.Float64bits(cfg.MaxAbsSum))
	binary.LittleEndian.PutUint64(hdr[20:], uint64(cfg.MaxDecryptions))
	msg := append([]byte("fl-secure/he/v2 reveal\x00"), hdr[:]...)
	msg = append(msg, crs[:]...)
	msg = append(msg, body[8:]...)
	return append(body, ed25519.Sign(s.identity, msg)...)
}
