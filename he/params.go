package he

import (
	"errors"
	"fmt"
	"math"

	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// A Preset names a CKKS parameter set. Every preset has a single ring
// dimension N = 2^LogN, ternary secrets, error σ = 3.2, no special modulus
// (an addition-only circuit needs no evaluation keys), and a ciphertext
// modulus Q within the 128-bit bound of the Homomorphic Encryption Standard
// (Albrecht et al., 2018, Table 1, ternary secrets) for its LogN.
type Preset struct {
	ID    byte
	Name  string
	LogN  int
	LogQ  []int
	Bound int // the standard's largest log2(QP) for 128-bit security at LogN
}

// Presets, from most compact to most precise. Compact is the default:
// one 60-bit modulus, so a ciphertext of N values is 2·N·8 bytes, 4× the
// values as float32.
var (
	Compact = Preset{ID: 1, Name: "n12-q60", LogN: 12, LogQ: []int{60}, Bound: 109}
	N13     = Preset{ID: 2, Name: "n13-q120", LogN: 13, LogQ: []int{60, 60}, Bound: 218}
	N14     = Preset{ID: 3, Name: "n14-q180", LogN: 14, LogQ: []int{60, 60, 60}, Bound: 438}
	N15     = Preset{ID: 4, Name: "n15-q240", LogN: 15, LogQ: []int{60, 60, 60, 60}, Bound: 881}
)

// Presets lists every preset.
var Presets = []Preset{Compact, N13, N14, N15}

func presetByID(id byte) (Preset, bool) {
	for _, p := range Presets {
		if p.ID == id {
			return p, true
		}
	}
	return Preset{}, false
}

// PresetByName returns the preset with the given name.
func PresetByName(name string) (Preset, error) {
	for _, p := range Presets {
		if p.Name == name {
			return p, nil
		}
	}
	return Preset{}, fmt.Errorf("he: unknown preset %q", name)
}

// Config describes a threshold aggregation group.
type Config struct {
	Preset Preset
	// Parties is the number of key holders N (the clients, 2 ≤ N ≤ 1024).
	Parties int
	// Threshold is how many of them must take part in a decryption (t).
	// It must exceed N/2: then any two decrypting subsets share a party,
	// who refuses to decrypt the same round twice. Against c colluding
	// parties, which can answer twice, it must be at least
	// MinThreshold(N, c).
	Threshold int
	// MinContributors is the fewest distinct clients whose updates a sum
	// must hold before any decryptor helps decrypt it (at least 2; 0 means
	// Threshold). Each party states its own in its advert; the group's is
	// the largest of them, fixed at setup and kept in every party's state
	// (see RestoreParty): it cannot be lowered afterwards.
	MinContributors int
	// MaxAbsSum bounds |Σ updates| in any coordinate; it fixes the scale.
	// 0 means 1024.
	MaxAbsSum float64
	// MaxDecryptions bounds the ciphertexts one key may decrypt over its
	// life (each ciphertext holds N values); it sizes the smudging noise.
	// 0 means 2^20.
	MaxDecryptions int
}

// MinThreshold returns the smallest threshold t for which any two
// decrypting subsets of t of the parties share more than colluders
// parties, ⌊(parties+colluders)/2⌋ + 1: two subsets of t share at least
// 2t − N, and 2t − N > c puts an honest party, which answers one request
// per round, in every overlap. Colluding parties can restore old copies of
// their state and answer a round twice; with t below this value two sums
// of one round — with and without one party's update — could both be
// decrypted, and their difference is that update. The result may exceed
// parties, in which case no threshold serves.
func MinThreshold(parties, colluders int) int {
	return (parties+max(colluders, 0))/2 + 1
}

// Params is a validated configuration with its derived noise analysis.
type Params struct {
	cfg    Config
	p      hefloat.Parameters
	logS   int     // log2 of the encoding scale
	flood  float64 // σ of each decryptor's smudging noise
	bound  float64 // high-probability bound on one coefficient of the summed ciphertexts' noise
	errMax float64 // bound on the max abs error of a decrypted sum
	secBit float64 // bits of security against key recovery from decryptions
	sdCt   float64 // σ of one coefficient of a sum of Parties ciphertexts' noise, with a 25% margin
}

// zTail is the number of standard deviations that bounds a coefficient of
// a Gaussian-like noise term except with probability 2^−40 per ciphertext
// (a union bound over up to 2^15 coefficients: √(2·ln(2·2^15·2^40)) < 9.6).
const zTail = 9.6

// NewParams validates cfg and derives the scale, the smudging noise and
// the precision. It never lets lattigo see invalid parameters.
func NewParams(cfg Config) (*Params, error) {
	pr, ok := presetByID(cfg.Preset.ID)
	if !ok || pr.Name != cfg.Preset.Name {
		return nil, fmt.Errorf("he: unknown preset %q", cfg.Preset.Name)
	}
	cfg.Preset = pr
	if cfg.Parties < 2 || cfg.Parties > 1024 {
		return nil, fmt.Errorf("he: %d parties, want 2 to 1024", cfg.Parties)
	}
	if cfg.Threshold <= cfg.Parties/2 || cfg.Threshold > cfg.Parties {
		return nil, fmt.Errorf("he: threshold %d must be above N/2 = %d and at most N = %d (two decrypting subsets must overlap)", cfg.Threshold, cfg.Parties/2, cfg.Parties)
	}
	if cfg.MinContributors == 0 {
		cfg.MinContributors = cfg.Threshold
	}
	if cfg.MinContributors < 2 || cfg.MinContributors > cfg.Parties {
		return nil, fmt.Errorf("he: minimum contributors %d outside [2, %d]", cfg.MinContributors, cfg.Parties)
	}
	if cfg.MaxAbsSum == 0 {
		cfg.MaxAbsSum = 1024
	}
	if !(cfg.MaxAbsSum > 0) || math.IsInf(cfg.MaxAbsSum, 0) {
		return nil, fmt.Errorf("he: MaxAbsSum must be positive and finite, got %v", cfg.MaxAbsSum)
	}
	if cfg.MaxDecryptions == 0 {
		cfg.MaxDecryptions = 1 << 20
	}
	if cfg.MaxDecryptions < 1 || cfg.MaxDecryptions > 1<<30 {
		return nil, fmt.Errorf("he: MaxDecryptions %d outside [1, 2^30]", cfg.MaxDecryptions)
	}
	p, err := hefloat.NewParametersFromLiteral(hefloat.ParametersLiteral{
		LogN: pr.LogN, LogQ: pr.LogQ, LogDefaultScale: 40,
	})
	if err != nil {
		return nil, fmt.Errorf("he: preset %s: %w", pr.Name, err)
	}
	n := float64(p.N())
	K := float64(cfg.Parties)
	// Noise of one fresh encryption under the collective key, per
	// coefficient: c0 + c1·s = m + u·e_pk + e0 + e1·s with u, s ternary
	// (density 2/3, s a sum of K such keys) and e_pk a sum of K errors of
	// σ = 3.2: variance σ²(1 + (4/3)·N·K). A sum of K ciphertexts has K
	// times that.
	xe, ok := p.Xe().(ring.DiscreteGaussian)
	if !ok {
		return nil, errors.New("he: internal error: error distribution is not Gaussian")
	}
	sigmaE := xe.Sigma
	varFresh := sigmaE * sigmaE * (1 + 4.0/3.0*n*K)
	bound := zTail * math.Sqrt(K*varFresh)
	// For the range check (see Combine) the variance gets a 25% margin: it
	// is an expectation over the ternary u and s, whose squared norms have
	// a relative standard deviation of about √(2/N) ≤ 2.3%.
	sdCt := math.Sqrt(1.25 * K * varFresh)
	// Smudging (noise flooding) against Li and Micciancio's IND-CPA^D key
	// recovery (EUROCRYPT 2021): a decryption shows m + e + E, where e
	// depends on the key. Over D ciphertexts of N coefficients, the Rényi
	// divergence of order 2 between the real view and one where e = 0 is at
	// most D·N·bound²/σ_f² when one honest decryptor adds N(0, σ_f²) per
	// coefficient (colluding decryptors may add none). Choosing
	// σ_f = bound·√(D·N) makes it at most 1, so any key-recovery attack
	// succeeds with probability at most √(p·e) if it would succeed with p
	// without decryption results (Rényi probability preservation; Bai,
	// Langlois, Lepoint, Stehlé, Steinfeld, ASIACRYPT 2015):
	// 2^−128 becomes 2^−63.3. This follows the differential-privacy view of
	// IND-CPA^D security in Li, Micciancio, Schultz, Sorrell, CRYPTO 2022.
	flood := bound * math.Sqrt(float64(cfg.MaxDecryptions)*n)
	// Worst-case decrypted error: ciphertext noise plus all t decryptors'
	// smudging, plus rounding, over the scale.
	noise := bound + zTail*math.Sqrt(float64(cfg.Threshold)*(flood*flood+sigmaE*sigmaE)) + float64(cfg.Parties)
	logQ := p.LogQ()
	// Scale: the largest power of two with MaxAbsSum·Δ + noise < Q/2.
	logS := int(math.Floor(logQ - 1 - math.Log2(cfg.MaxAbsSum) - 1e-9))
	if float64(logS) < math.Log2(noise)+8 {
		return nil, fmt.Errorf("he: preset %s cannot hold sums up to %g with %d parties and %d decryptions: noise 2^%.1f leaves under 8 bits of precision; use a larger preset, a smaller MaxAbsSum or fewer decryptions",
			pr.Name, cfg.MaxAbsSum, cfg.Parties, cfg.MaxDecryptions, math.Log2(noise))
	}
	if logS > 1000 {
		return nil, errors.New("he: internal error: scale out of range")
	}
	return &Params{
		cfg: cfg, p: p, logS: logS, flood: flood, bound: bound,
		// Plus float64 rounding of the decoded value and of a sum of up to
		// Parties values computed in float64 for comparison.
		errMax: noise/math.Exp2(float64(logS)) + float64(cfg.Parties+2)*0x1p-52*cfg.MaxAbsSum,
		secBit: 64 - 0.5*math.Log2(math.E),
		sdCt:   sdCt,
	}, nil
}

// Config returns the configuration, with defaults filled in.
func (p *Params) Config() Config { return p.cfg }

// LogN returns log2 of the ring dimension.
func (p *Params) LogN() int { return p.p.LogN() }

// LogQP returns log2 of the full modulus, for the security check.
func (p *Params) LogQP() float64 { return p.p.LogQP() }

// guardCoefficients is how many coefficients at the top of every
// ciphertext an honest encoding leaves at zero. A malformed ciphertext's
// key-dependent term c1·s has the same distribution in every coefficient
// (negacyclic rotations permute the key's independent, symmetric
// coefficients), so Combine's check that these guards decrypt to zero
// bounds that term everywhere (see the package documentation, "Range
// check").
const guardCoefficients = 64

// ValuesPerCiphertext returns how many values one ciphertext carries: N
// less the zero guard coefficients.
func (p *Params) ValuesPerCiphertext() int { return p.p.N() - guardCoefficients }

// CiphertextBytes returns the encoded size of one ciphertext.
func (p *Params) CiphertextBytes() int { return 2 * p.p.N() * (p.p.MaxLevel() + 1) * 8 }

// LogScale returns log2 of the encoding scale.
func (p *Params) LogScale() int { return p.logS }

// SmudgingSigma returns the σ of the noise each decryptor adds.
func (p *Params) SmudgingSigma() float64 { return p.flood }

// MaxError bounds the absolute error of any coordinate of a decrypted sum
// (except with probability about 2^−40 per ciphertext).
func (p *Params) MaxError() float64 { return p.errMax }

// SecurityBits returns the security against key recovery from decryption
// results, in bits, assuming the scheme is 128-bit secure without them:
// 64 − log2(e)/2 ≈ 63.3, for up to MaxDecryptions ciphertexts.
func (p *Params) SecurityBits() float64 { return p.secBit }

// zRound is the number of standard deviations that bounds every
// coefficient of a decryption in which M coefficients are checked, except
// with probability 2^−40 in all: each coefficient is checked against three
// sub-Gaussian terms (the clients' DP noise, the ciphertexts' noise, the
// decryptors' smudging), each beyond z of its σ with probability at most
// 2·e^(−z²/2), so 6·M·e^(−z²/2) ≤ 2^−40 gives z = √(2·(ln(6M) + 40·ln 2)).
func zRound(m int) float64 {
	return math.Sqrt(2 * (math.Log(6*float64(m)) + 40*math.Ln2))
}

// ckksTolerance bounds, in raw (scaled) units, how far one coefficient of
// an honest decryption lies from Δ·(its value): z σ of the noise of up to
// Parties summed ciphertexts, z σ of the smudging of the given number of
// decryptors, and the encoders' rounding (½ per client).
func (p *Params) ckksTolerance(z float64, decryptors int) float64 {
	return z*(p.sdCt+math.Sqrt(float64(decryptors))*p.flood) + float64(p.cfg.Parties) + 1
}

// String describes the parameters.
func (p *Params) String() string {
	return fmt.Sprintf("%s: N=2^%d, log2 Q=%.0f, t=%d of %d, scale 2^%d, smudging σ=2^%.1f, max error %.2g",
		p.cfg.Preset.Name, p.LogN(), p.p.LogQ(), p.cfg.Threshold, p.cfg.Parties, p.logS, math.Log2(p.flood), p.errMax)
}
