package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/he"
)

// Mode is how sites' updates are protected in transit.
type Mode string

const (
	SecAgg Mode = "secagg" // pairwise-mask secure aggregation
	HE     Mode = "he"     // threshold CKKS
	Plain  Mode = "plain"  // NOT PRIVATE: the coordinator sees every update
)

// Config is a federated training run.
type Config struct {
	Mode  Mode
	Level dp.Level // record (full-batch DP-SGD) or client (clipped FedAvg updates)
	// DP false trains without noise or ledgers, for comparison.
	DP      bool
	Epsilon float64 // the coordinator's cap for the whole run
	Delta   float64
	// SiteCap is each hospital's own ε cap (0: Epsilon).
	SiteCap float64
	// Colluders is the number of sites assumed to collude with the
	// coordinator; noise is sized for MinCohort − Colluders honest sites.
	Colluders int
	// MinCohort is k: no aggregate of fewer than k sites is ever opened (0:
	// a majority of the sites, at least 3).
	MinCohort int
	Rounds    int
	// PlanRounds is how many rounds the noise is calibrated for (0:
	// Rounds). With more Rounds than PlanRounds the coordinator's ledger
	// refuses the round that would pass its cap.
	PlanRounds int
	Model      string
	Hidden     int
	Clip       float64 // per-record (record level) or per-update (client level) L2 bound
	// LearningRate is the server step on the mean clipped gradient (record
	// level) or the local SGD step (client level).
	LearningRate float64
	LocalEpochs  int // client level
	BatchSize    int // client level
	ProxMu       float64
	// Dropout is the chance that a site is offline in a round (simulation).
	Dropout float64
	Bits    int // secagg ring width
	Seed    uint64
	// Dir receives the ledgers, public keys and checkpoints.
	Dir string
	// Rand, if set, supplies each site's randomness for noise, rounding and
	// record sampling instead of crypto/rand. For reproducible tests only.
	Rand func(site int) io.Reader
	// AverageFrom, if positive, makes the final model the average of the
	// published models from that round on (tail averaging: post-processing
	// of released models, so it costs no privacy, and it averages out
	// noise). 0 means the second half of the run; −1 keeps the last model.
	AverageFrom int
	// Progress, if set, is called after every round.
	Progress func(r RoundResult)
}

// RoundResult reports one round.
type RoundResult struct {
	Round        int        `json:"round"`
	Participants int        `json:"participants"`
	Status       string     `json:"status"` // "ok", "below-cohort", "budget-refused"
	Epsilon      float64    `json:"epsilon"`
	Test         fl.Metrics `json:"test"`
}

// Summary reports a whole run.
type Summary struct {
	Mode            Mode          `json:"mode"`
	Level           dp.Level      `json:"level,omitempty"`
	DP              bool          `json:"dp"`
	Rounds          []RoundResult `json:"rounds"`
	Test            fl.Metrics    `json:"test"`
	Epsilon         float64       `json:"epsilon"`
	Delta           float64       `json:"delta,omitempty"`
	NoiseMultiplier float64       `json:"noise_multiplier,omitempty"`
	SiteSigma       float64       `json:"site_sigma,omitempty"`
	Ledger          string        `json:"ledger,omitempty"`
	LedgerKey       string        `json:"ledger_key,omitempty"`
	SiteLedgers     []string      `json:"site_ledgers,omitempty"`
	SiteKeys        []string      `json:"site_keys,omitempty"`
	Disclosed       string        `json:"disclosed"`
	Model           []float64     `json:"-"`
}

func (c *Config) defaults(nSites int) error {
	if c.Mode == "" {
		c.Mode = SecAgg
	}
	switch c.Mode {
	case SecAgg, HE, Plain:
	default:
		return fmt.Errorf("protocol: unknown mode %q (secagg, he, plain)", c.Mode)
	}
	if c.Level == "" {
		c.Level = dp.RecordLevel
	}
	if c.Level != dp.RecordLevel && c.Level != dp.ClientLevel {
		return fmt.Errorf("protocol: level %q is neither record nor client", c.Level)
	}
	if c.MinCohort == 0 {
		c.MinCohort = max(3, nSites/2+1)
	}
	if nSites < 3 && c.Mode != Plain {
		return fmt.Errorf("protocol: %d sites: secure aggregation needs at least 3 (a sum of two reveals each to the other)", nSites)
	}
	if c.MinCohort > nSites || c.MinCohort < 1 {
		return fmt.Errorf("protocol: minimum cohort %d for %d sites", c.MinCohort, nSites)
	}
	if c.Colluders < 0 || c.Colluders >= c.MinCohort {
		return fmt.Errorf("protocol: %d colluders leave no honest site in a cohort of %d", c.Colluders, c.MinCohort)
	}
	if c.Rounds < 1 || c.Rounds > 100000 {
		return fmt.Errorf("protocol: %d rounds", c.Rounds)
	}
	if !(c.Clip > 0) || !(c.LearningRate > 0) {
		return fmt.Errorf("protocol: clip %v and learning rate %v must be positive", c.Clip, c.LearningRate)
	}
	if !(c.Dropout >= 0 && c.Dropout < 1) {
		return fmt.Errorf("protocol: dropout %v outside [0, 1)", c.Dropout)
	}
	if c.Level == dp.ClientLevel && (c.LocalEpochs < 1 || c.BatchSize < 1) {
		return fmt.Errorf("protocol: client level needs local epochs and a batch size")
	}
	if c.DP {
		if c.Mode == Plain {
			return errors.New("protocol: DP needs secagg or he: in plain mode the coordinator sees every update before noise")
		}
		if !(c.Epsilon > 0) || !(c.Delta > 0 && c.Delta < 1) {
			return fmt.Errorf("protocol: ε %v and δ %v", c.Epsilon, c.Delta)
		}
		if c.SiteCap == 0 {
			c.SiteCap = c.Epsilon
		}
		if c.Dir == "" {
			return errors.New("protocol: DP runs need a directory for their ledgers")
		}
	}
	if c.Bits == 0 {
		c.Bits = 32
	}
	if c.PlanRounds == 0 {
		c.PlanRounds = c.Rounds
	}
	if c.PlanRounds < 1 {
		return fmt.Errorf("protocol: noise planned for %d rounds", c.PlanRounds)
	}
	return nil
}

// disclosed names what a run releases outside its ε.
const disclosed = "the number of records and each feature's sum and sum of squares over one survivor set of at least the minimum cohort, opened once (federated standardization, through secure aggregation, not noised)"

// Train runs federated training over sites and evaluates on test (held by
// the coordinator in simulation). Every round: sites that are online and
// whose own budget allows join; the coordinator's and every joining site's
// ledger must accept the round before any site computes anything from its
// data; the minimum-cohort rule is checked before any sum is opened;
// ledger entries are fsync'ed before the model is updated; a checkpoint is
// written after every round.
func Train(cfg Config, sites []*fl.Dataset, test *fl.Dataset) (*Summary, error) {
	if err := cfg.defaults(len(sites)); err != nil {
		return nil, err
	}
	n := len(sites)
	d0 := sites[0].Dim()
	task := sites[0].Task
	classes := sites[0].Classes
	for _, s := range sites {
		if s.Dim() != d0 || s.Task != task {
			return nil, errors.New("protocol: sites hold different kinds of data")
		}
		classes = max(classes, s.Classes)
	}
	model, err := fl.NewModel(cfg.Model, task, d0, classes, cfg.Hidden)
	if err != nil {
		return nil, err
	}
	d := model.NumParams()
	samplers := make([]*dp.Sampler, n)
	for i := range samplers {
		var src io.Reader
		if cfg.Rand != nil {
			src = cfg.Rand(i)
		}
		if samplers[i], err = dp.NewSampler(src); err != nil {
			return nil, err
		}
	}

	// Federated standardization: counts, sums and sums of squares through
	// the same secure aggregation, without noise (disclosed, see Summary).
	statsSum, err := newSummer(cfg, n, 1+2*d0, 1<<40, samplers, nil, 0)
	if err != nil {
		return nil, err
	}
	all := make([]int, n)
	vecs := make([][]float64, n)
	for i := range sites {
		all[i] = i
		vecs[i] = fl.LocalStats(withLabel(sites[i])).Vector()
	}
	sv, err := statsSum.sum(1<<62, all, vecs, false)
	if err != nil {
		return nil, fmt.Errorf("protocol: aggregating statistics: %w", err)
	}
	std, ymean, yscale, err := standardizer(sv, d0, task)
	if err != nil {
		return nil, err
	}
	local := make([]*fl.Dataset, n)
	maxRows := 0
	for i := range sites {
		local[i] = scaleLabels(std.Apply(sites[i]), ymean, yscale)
		maxRows = max(maxRows, local[i].Rows())
	}
	test = scaleLabels(std.Apply(test), ymean, yscale)
	totalRows := math.Round(sv[0])

	sum := &Summary{Mode: cfg.Mode, DP: cfg.DP, Disclosed: disclosed}
	var event dp.Event
	var coord *dp.Ledger
	var siteLedgers []*dp.Ledger
	var noiseGrid *dp.GridGaussian
	var noiseInt *dp.DiscreteGaussian
	var gamma float64
	clientNorm := cfg.Clip
	if cfg.Level == dp.RecordLevel {
		clientNorm = cfg.Clip * float64(maxRows)
	}
	if cfg.DP {
		sum.Level, sum.Delta = cfg.Level, cfg.Delta
		cal, err := dp.Calibrate(dp.RDP, dp.AddRemove, dp.DiscreteGaussianMechanism, cfg.Epsilon, cfg.Delta, cfg.PlanRounds, 1)
		if err != nil {
			return nil, err
		}
		dc := dp.DistributedConfig{Clip: cfg.Clip, ClientNorm: clientNorm, Clients: n, Threshold: cfg.MinCohort,
			Colluders: cfg.Colluders, Dim: d, Bits: cfg.Bits}
		if cfg.Mode == HE {
			dc.Gamma = math.Exp2(-24)
		}
		plan, err := dp.PlanDistributed(cal.NoiseMultiplier, dc)
		if err != nil {
			return nil, err
		}
		gamma = plan.Gamma
		event = dp.Event{Mechanism: dp.DiscreteGaussianMechanism, NoiseMultiplier: plan.NoiseMultiplier, SamplingRate: 1, Count: 1}
		sum.NoiseMultiplier, sum.SiteSigma = plan.NoiseMultiplier, plan.LocalSigma
		if noiseInt, err = dp.NewDiscreteGaussian(plan.LocalSigma2); err != nil {
			return nil, err
		}
		if cfg.Mode == HE {
			if noiseGrid, err = dp.NewGridGaussian(plan.LocalSigma, -24); err != nil {
				return nil, err
			}
		}
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, err
		}
		open := func(name string, cap float64) (*dp.Ledger, string, error) {
			pub, key, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return nil, "", err
			}
			path := filepath.Join(cfg.Dir, name+"-ledger.jsonl")
			l, err := dp.CreateLedger(path, key, dp.LedgerOptions{Accountant: dp.RDP, Relation: dp.AddRemove, Delta: cfg.Delta, Cap: cap})
			if err != nil {
				return nil, "", err
			}
			k := base64.StdEncoding.EncodeToString(pub)
			if err := os.WriteFile(filepath.Join(cfg.Dir, name+".pub"), []byte(k+"\n"), 0o644); err != nil {
				return nil, "", err
			}
			return l, k, nil
		}
		var k string
		if coord, k, err = open("coordinator", cfg.Epsilon); err != nil {
			return nil, err
		}
		defer coord.Close()
		sum.Ledger, sum.LedgerKey = filepath.Join(cfg.Dir, "coordinator-ledger.jsonl"), k
		for i := range sites {
			l, k, err := open(fmt.Sprintf("site-%d", i+1), cfg.SiteCap)
			if err != nil {
				return nil, err
			}
			defer l.Close()
			siteLedgers = append(siteLedgers, l)
			sum.SiteLedgers = append(sum.SiteLedgers, filepath.Join(cfg.Dir, fmt.Sprintf("site-%d-ledger.jsonl", i+1)))
			sum.SiteKeys = append(sum.SiteKeys, k)
		}
	}
	// Without DP, client-level FedAvg weights updates by sample counts
	// (McMahan et al., AISTATS 2017), and the counts travel inside the
	// secure sum as one more coordinate. With DP, updates are averaged
	// unweighted: a weight would multiply a hospital's sensitivity.
	weighted := cfg.Level == dp.ClientLevel && !cfg.DP
	dim := d
	if weighted {
		dim++
	}
	trainSum, err := newSummer(cfg, n, dim, float64(totalRows)*cfg.Clip*4+1024, samplers, noiseGrid, gamma)
	if err != nil {
		return nil, err
	}
	if ss, ok := trainSum.(*secaggSummer); ok && cfg.DP {
		ss.noise = noiseInt
	}

	w := model.Init(cfg.Seed)
	sim := mrand.New(mrand.NewPCG(cfg.Seed, 0xd20))
	from := cfg.AverageFrom
	if from == 0 {
		from = cfg.Rounds/2 + 1
	}
	avg := make([]float64, len(w))
	averaged := 0
	for r := 1; r <= cfg.Rounds; r++ {
		res := RoundResult{Round: r}
		charge := func(participants int) dp.Charge {
			return dp.Charge{RunID: fmt.Sprintf("seed-%d", cfg.Seed), Round: r, Level: cfg.Level, Event: event,
				Sigma: event.NoiseMultiplier * cfg.Clip, Clip: cfg.Clip, Participants: n, Survivors: participants, Colluders: cfg.Colluders}
		}
		// Who takes part: online, and with budget left.
		var part []int
		for i := 0; i < n; i++ {
			if sim.Float64() < cfg.Dropout {
				continue
			}
			if cfg.DP {
				if _, err := siteLedgers[i].Preview(charge(0)); err != nil {
					continue // this hospital's own budget is spent: it sits out
				}
			}
			part = append(part, i)
		}
		if cfg.DP {
			if _, err := coord.Preview(charge(len(part))); err != nil {
				res.Status, res.Epsilon = "budget-refused", coord.Spent()
				sum.Rounds = append(sum.Rounds, res)
				break
			}
		}
		if len(part) < cfg.MinCohort {
			res.Status, res.Participants = "below-cohort", len(part)
			if cfg.DP {
				res.Epsilon = coord.Spent()
			}
			sum.Rounds = append(sum.Rounds, res)
			if cfg.Progress != nil {
				cfg.Progress(res)
			}
			continue
		}
		res.Participants = len(part)
		vecs := make([][]float64, len(part))
		var scale float64
		for j, i := range part {
			switch cfg.Level {
			case dp.RecordLevel:
				// One full-batch DP-SGD step over the union: each site
				// sends the sum of its records' clipped gradients.
				g, _, err := fl.ClippedGradientSum(model, w, local[i], 1, cfg.Clip, samplers[i])
				if err != nil {
					return nil, err
				}
				vecs[j] = g
			default:
				up, _, err := fl.LocalSGD(model, w, local[i], fl.TrainConfig{Epochs: cfg.LocalEpochs, BatchSize: cfg.BatchSize,
					LearningRate: cfg.LearningRate, ProxMu: cfg.ProxMu, Seed: cfg.Seed + uint64(r*1000+i)})
				if err != nil {
					return nil, err
				}
				if cfg.DP {
					if err := dp.ClipL2(up, cfg.Clip, nil); err != nil {
						return nil, err
					}
				}
				if weighted {
					rows := float64(local[i].Rows())
					for k := range up {
						up[k] *= rows
					}
					up = append(up, rows)
				}
				vecs[j] = up
			}
		}
		agg, err := trainSum.sum(uint64(r), part, vecs, cfg.DP)
		if err != nil {
			return nil, fmt.Errorf("protocol: round %d: %w", r, err)
		}
		// Charge before publishing: fsync'ed ledger entries first.
		if cfg.DP {
			if _, err := coord.Charge(charge(len(part))); err != nil {
				return nil, err
			}
			for _, i := range part {
				if _, err := siteLedgers[i].Charge(charge(len(part))); err != nil {
					return nil, err
				}
			}
			res.Epsilon = coord.Spent()
		}
		switch {
		case cfg.Level == dp.RecordLevel:
			scale = -cfg.LearningRate / totalRows
		case weighted:
			scale = 1 / agg[d]
		default:
			scale = 1 / float64(len(part))
		}
		for k := range w {
			w[k] += scale * agg[k]
		}
		if cfg.Dir != "" {
			if err := checkpoint(cfg.Dir, r, w, res.Epsilon); err != nil {
				return nil, err
			}
		}
		res.Status = "ok"
		if from > 0 && r >= from {
			averaged++
			for k := range avg {
				avg[k] += (w[k] - avg[k]) / float64(averaged)
			}
		}
		if res.Test, err = fl.Evaluate(model, w, test); err != nil {
			return nil, err
		}
		sum.Rounds = append(sum.Rounds, res)
		if cfg.Progress != nil {
			cfg.Progress(res)
		}
	}
	if averaged > 0 {
		w = avg
	}
	if sum.Test, err = fl.Evaluate(model, w, test); err != nil {
		return nil, err
	}
	sum.Test.RMSE *= yscale
	for i := range sum.Rounds {
		sum.Rounds[i].Test.RMSE *= yscale
	}
	if cfg.DP {
		sum.Epsilon = coord.Spent()
	}
	sum.Model = w
	return sum, nil
}

// withLabel returns d with, for regression, the label as a last feature, so
// that its mean and variance are aggregated with the features'.
func withLabel(d *fl.Dataset) *fl.Dataset {
	if d.Task != fl.Regression {
		return d
	}
	out := *d
	out.Features = append(append([]string(nil), d.Features...), d.Label)
	out.X = make([][]float64, len(d.X))
	for i, x := range d.X {
		out.X[i] = append(append([]float64(nil), x...), d.Y[i])
	}
	return &out
}

// standardizer turns the summed statistics into a feature standardizer
// and, for regression, the label's mean and scale.
func standardizer(sv []float64, d int, task fl.Task) (*fl.Standardizer, float64, float64, error) {
	dd := d
	if task == fl.Regression {
		dd++
	}
	st, err := fl.StatsFromVector(sv, dd)
	if err != nil {
		return nil, 0, 0, err
	}
	std, err := fl.NewStandardizer(st)
	if err != nil {
		return nil, 0, 0, err
	}
	if task != fl.Regression {
		return std, 0, 1, nil
	}
	ym, ys := std.Mean[d], std.Scale[d]
	std.Mean, std.Scale = std.Mean[:d], std.Scale[:d]
	return std, ym, ys, nil
}

// scaleLabels standardizes regression labels (RMSE is reported back in
// the original units).
func scaleLabels(d *fl.Dataset, mean, scale float64) *fl.Dataset {
	if d.Task != fl.Regression {
		return d
	}
	out := *d
	out.Y = make([]float64, len(d.Y))
	for i, y := range d.Y {
		out.Y[i] = (y - mean) / scale
	}
	return &out
}

// Baseline trains without federation or privacy on train (standardized
// with its own statistics) and evaluates on test: the reference rows of
// the simulator's table (centralized, or one hospital alone).
func Baseline(modelName string, hidden int, train, test *fl.Dataset, seed uint64) (fl.Metrics, error) {
	std, ym, ys, err := standardizer(fl.LocalStats(withLabel(train)).Vector(), train.Dim(), train.Task)
	if err != nil {
		return fl.Metrics{}, err
	}
	tr, te := scaleLabels(std.Apply(train), ym, ys), scaleLabels(std.Apply(test), ym, ys)
	m, err := fl.NewModel(modelName, train.Task, train.Dim(), max(train.Classes, test.Classes), hidden)
	if err != nil {
		return fl.Metrics{}, err
	}
	w := m.Init(seed)
	up, _, err := fl.LocalSGD(m, w, tr, fl.TrainConfig{Epochs: 100, BatchSize: 16, LearningRate: 0.05, Seed: seed})
	if err != nil {
		return fl.Metrics{}, err
	}
	for i := range w {
		w[i] += up[i]
	}
	r, err := fl.Evaluate(m, w, te)
	r.RMSE *= ys
	return r, err
}

func newSummer(cfg Config, n, d int, maxAbs float64, samplers []*dp.Sampler, grid *dp.GridGaussian, gamma float64) (summer, error) {
	switch cfg.Mode {
	case Plain:
		return plainSummer{}, nil
	case HE:
		if gamma == 0 {
			gamma = math.Exp2(-24)
		}
		return newHESummer(n, he.N13, n/2+1, min(cfg.MinCohort, n), math.Exp2(math.Ceil(math.Log2(maxAbs))), gamma, grid, samplers)
	}
	keys := make([]ed25519.PrivateKey, n)
	for i := range keys {
		var err error
		if _, keys[i], err = ed25519.GenerateKey(rand.Reader); err != nil {
			return nil, err
		}
	}
	bits := cfg.Bits
	if gamma == 0 {
		// Statistics or noise-free rounds: a 64-bit ring and a fine grid.
		bits, gamma = 64, math.Exp2(-16)
	}
	return &secaggSummer{keys: keys, bits: bits, gamma: gamma, bound: math.Inf(1), samplers: samplers, corrupt: cfg.Colluders}, nil
}

// checkpoint writes the model after a round as safetensors, atomically.
func checkpoint(dir string, round int, w []float64, eps float64) error {
	cd := filepath.Join(dir, "checkpoints")
	if err := os.MkdirAll(cd, 0o700); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := fl.WriteSafetensors(&buf, map[string]fl.Tensor{"model": {DType: "F64", Shape: []int{len(w)}, Data: w}},
		map[string]string{"round": strconv.Itoa(round), "epsilon": strconv.FormatFloat(eps, 'g', -1, 64)}); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(cd, fmt.Sprintf("round-%04d.safetensors", round)), buf.Bytes())
}
