package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/he"
	"github.com/fl-secure/fl-secure/internal/prg"
	"github.com/fl-secure/fl-secure/protocol"
	"github.com/fl-secure/fl-secure/protocol/local"
	"github.com/fl-secure/fl-secure/secagg"
	"github.com/fl-secure/fl-secure/secagg/secaggtest"
)

// A Result is one measurement: a scenario's case, a metric, its value and
// the same metric for the case's plaintext baseline measured in the same
// process (0 when there is none).
type Result struct {
	Scenario string             `json:"scenario"`
	Case     string             `json:"case"`
	Params   map[string]float64 `json:"params"`
	Metric   string             `json:"metric"`
	Unit     string             `json:"unit"`
	Value    float64            `json:"value"`
	Baseline float64            `json:"baseline,omitempty"`
	Ratio    float64            `json:"ratio,omitempty"`
	Spread   float64            `json:"spread,omitempty"` // standard deviation over seeds
}

// Options choose what runs.
type Options struct {
	Quick    bool
	Filter   *regexp.Regexp // matched against "scenario/case"; nil runs all
	Progress func(done, total int, what string)
}

// How long the two grids take on 2 vCPUs, as `fl-secure bench -h` and
// BENCHMARKS.md state it: the shorter time on an otherwise idle machine,
// the longer one with other work sharing the cores (measurements in
// BENCHMARKS.md).
const (
	QuickTime = "20 s to 1 min"
	FullTime  = "3 to 10 min"
)

type scenario struct {
	name  string
	cases func(quick bool) []bcase
}

type bcase struct {
	name string
	run  func() ([]Result, error)
}

func scenarios() []scenario {
	return []scenario{
		{"secagg", secaggCases},
		{"he", heCases},
		{"dp", dpCases},
		{"e2e", e2eCases},
		{"utility", utilityCases},
	}
}

// Run runs the selected scenarios and returns their results.
func Run(opt Options) ([]Result, error) {
	var todo []bcase
	var names []string
	for _, s := range scenarios() {
		for _, c := range s.cases(opt.Quick) {
			id := s.name + "/" + c.name
			if opt.Filter != nil && !opt.Filter.MatchString(id) {
				continue
			}
			todo = append(todo, c)
			names = append(names, id)
		}
	}
	var out []Result
	for i, c := range todo {
		if opt.Progress != nil {
			opt.Progress(i, len(todo), names[i])
		}
		cpu0, wall0 := cpuTime(), time.Now()
		r, err := c.run()
		if err != nil {
			return out, fmt.Errorf("bench: %s: %w", names[i], err)
		}
		if cpu := cpuTime() - cpu0; cpu > 0 && len(r) > 0 && r[0].Scenario != "utility" {
			wall := time.Since(wall0)
			// CPU of the whole case (all parties and the baseline), and
			// how many cores it kept busy on average.
			out = append(out, Result{Scenario: r[0].Scenario, Case: r[0].Case, Params: r[0].Params, Metric: "process CPU (baseline: wall time; ratio: cores busy)",
				Unit: "ms", Value: float64(cpu.Microseconds()) / 1000, Baseline: float64(wall.Microseconds()) / 1000,
				Ratio: cpu.Seconds() / wall.Seconds()})
		}
		out = append(out, r...)
	}
	if opt.Progress != nil {
		opt.Progress(len(todo), len(todo), "")
	}
	return out, nil
}

// peak samples the heap while f runs and returns f's error and the largest
// heap in use above the level before it started, in bytes.
func peak(f func() error) (int64, error) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := int64(ms.HeapInuse)
	var mu sync.Mutex
	top := base
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				mu.Lock()
				top = max(top, int64(m.HeapInuse))
				mu.Unlock()
			}
		}
	}()
	err := f()
	close(stop)
	<-done
	return top - base, err
}

func ratio(v, b float64) float64 {
	if b == 0 {
		return 0
	}
	return v / b
}

// secaggCases scans n (SecAgg+ at 10% dropout, for the scaling exponent,
// and the complete graph), d, and the dropout rate.
func secaggCases(quick bool) []bcase {
	type c struct {
		n, d     int
		complete bool
		dropout  float64
	}
	var cs []c
	ns := []int{10, 50, 100}
	if !quick {
		ns = []int{10, 50, 100, 500, 1000}
	}
	for _, n := range ns {
		cs = append(cs, c{n, 10_000, false, 0.1})
		if n <= 500 {
			cs = append(cs, c{n, 10_000, true, 0.1})
		}
	}
	ds := []int{10_000, 100_000}
	if !quick {
		ds = append(ds, 1_000_000)
	}
	for _, d := range ds[1:] {
		cs = append(cs, c{100, d, false, 0.1})
	}
	drops := []float64{0, 0.3}
	if quick {
		drops = []float64{0}
	}
	for _, p := range drops {
		cs = append(cs, c{100, 10_000, false, p})
	}
	var out []bcase
	for _, x := range cs {
		graph := "secagg+"
		if x.complete {
			graph = "complete"
		}
		name := fmt.Sprintf("%s/n=%d/d=%d/dropout=%g", graph, x.n, x.d, x.dropout)
		out = append(out, bcase{name, func() ([]Result, error) { return secaggRound(name, x.n, x.d, x.complete, x.dropout) }})
	}
	return out
}

func secaggRound(name string, n, d int, complete bool, dropout float64) ([]Result, error) {
	pl, err := secaggtest.NewPlan(secaggtest.Config{Clients: n, Rounds: 1, Dim: d - 1, Dropout: dropout, Complete: complete, Bits: 32, Clip: 1, MaxWeight: 1})
	if err != nil {
		return nil, err
	}
	p := pl.Params
	p.Round = 1
	keys := make([]ed25519.PrivateKey, n)
	pubs := make([]ed25519.PublicKey, n)
	for i := range keys {
		pubs[i], keys[i], _ = ed25519.GenerateKey(rand.Reader)
	}
	roster, err := secagg.NewRoster(pubs)
	if err != nil {
		return nil, err
	}
	inputs := make([][]uint64, n)
	var seed [prg.KeySize]byte
	r := prg.NewReader(&seed)
	for i := range inputs {
		inputs[i] = make([]uint64, p.Length)
		for k := range inputs[i] {
			inputs[i][k] = r.Uint64n(1 << 32)
		}
	}
	// Dropouts after sharing keys: the case that costs the server most.
	drop := make([]secaggtest.Phase, n)
	for i := 0; i < int(math.Round(dropout*float64(n))); i++ {
		drop[i] = secaggtest.AfterShares
	}
	var res secaggtest.Result
	mem, err := peak(func() error {
		res = secaggtest.Drive(p, keys, roster, inputs, drop, nil)
		return res.Err
	})
	if err != nil {
		return nil, err
	}
	// Baselines in the same process: the plain sum of the survivors'
	// inputs, and one client's raw AES-CTR keystream for its k+1 masks.
	t0 := time.Now()
	sum := make([]uint64, p.Length)
	for _, in := range inputs {
		for k, v := range in {
			sum[k] += v
		}
	}
	plain := time.Since(t0)
	ks := make([]byte, 4*p.Length)
	t0 = time.Now()
	for j := 0; j <= p.Degree; j++ {
		prg.Keystream(ks, &seed, 0)
	}
	stream := time.Since(t0)
	var ct time.Duration
	var bytes int64
	alive := 0
	for i := range res.ClientTime {
		if drop[i] == secaggtest.Stay {
			ct += res.ClientTime[i]
			bytes += res.ClientBytes[i]
			alive++
		}
	}
	meanClient := ct / time.Duration(alive)
	params := map[string]float64{"n": float64(n), "d": float64(d), "k": float64(p.Degree), "dropout": dropout}
	ms := func(t time.Duration) float64 { return float64(t.Microseconds()) / 1000 }
	return []Result{
		{Scenario: "secagg", Case: name, Params: params, Metric: "server time", Unit: "ms", Value: ms(res.ServerTime), Baseline: ms(plain), Ratio: ratio(ms(res.ServerTime), ms(plain))},
		{Scenario: "secagg", Case: name, Params: params, Metric: "client time", Unit: "ms", Value: ms(meanClient), Baseline: ms(stream), Ratio: ratio(ms(meanClient), ms(stream))},
		{Scenario: "secagg", Case: name, Params: params, Metric: "bytes per client", Unit: "B", Value: float64(bytes) / float64(alive), Baseline: float64(4 * d), Ratio: float64(bytes) / float64(alive) / float64(4*d)},
		{Scenario: "secagg", Case: name, Params: params, Metric: "peak heap", Unit: "MB", Value: float64(mem) / 1e6},
	}, nil
}

func heCases(quick bool) []bcase {
	type c struct{ d, n int }
	cs := []c{{1 << 16, 5}}
	if !quick {
		cs = []c{{1 << 16, 5}, {1 << 16, 20}, {1 << 20, 5}, {1 << 20, 20}}
	}
	var out []bcase
	for _, x := range cs {
		name := fmt.Sprintf("d=2^%d/N=%d", int(math.Log2(float64(x.d))), x.n)
		out = append(out, bcase{name, func() ([]Result, error) { return heRound(name, x.d, x.n) }})
	}
	return out
}

func heRound(name string, d, n int) ([]Result, error) {
	params, err := he.NewParams(he.Config{Preset: he.Compact, Parties: n, Threshold: n/2 + 1})
	if err != nil {
		return nil, err
	}
	keys := make([]ed25519.PrivateKey, n)
	roster := make([]ed25519.PublicKey, n)
	for i := range keys {
		roster[i], keys[i], _ = ed25519.GenerateKey(rand.Reader)
	}
	parties, err := he.SetupLocal(params, keys)
	if err != nil {
		return nil, err
	}
	v := make([]float64, d)
	for i := range v {
		v[i] = float64(i%100) / 100
	}
	var terms [he.ContextSize]byte // one process: every party holds the same round terms
	agg, _ := he.NewAggregator(params, roster, parties[0].CRS(), 1, terms)
	var enc time.Duration
	var subBytes int
	var mem int64
	mem, err = peak(func() error {
		for i, p := range parties {
			t0 := time.Now()
			sub, err := p.Encrypt(1, terms, v, he.NoNoise)
			if i == 0 {
				enc = time.Since(t0)
				subBytes = len(sub)
			}
			if err != nil {
				return err
			}
			if err := agg.Add(sub); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i + 1
	}
	req, err := agg.Request(ids)
	if err != nil {
		return nil, err
	}
	var shares [][]byte
	var share time.Duration
	for i := 0; i < n/2+1; i++ {
		t0 := time.Now()
		s, err := parties[i].DecryptShare(req, terms)
		if i == 0 {
			share = time.Since(t0)
		}
		if err != nil {
			return nil, err
		}
		shares = append(shares, s)
	}
	t0 := time.Now()
	if _, err := agg.Combine(shares); err != nil {
		return nil, err
	}
	combine := time.Since(t0)
	x := make([]float32, d)
	acc := make([]float32, d)
	t0 = time.Now()
	for k := range x {
		acc[k] += x[k]
	}
	plain := time.Since(t0)
	ms := func(t time.Duration) float64 { return float64(t.Microseconds()) / 1000 }
	params2 := map[string]float64{"d": float64(d), "N": float64(n), "t": float64(n/2 + 1)}
	return []Result{
		{Scenario: "he", Case: name, Params: params2, Metric: "encrypt per client", Unit: "ms", Value: ms(enc), Baseline: ms(plain), Ratio: ratio(ms(enc), ms(plain))},
		{Scenario: "he", Case: name, Params: params2, Metric: "decryption share (incl. checks)", Unit: "ms", Value: ms(share)},
		{Scenario: "he", Case: name, Params: params2, Metric: "combine and decode", Unit: "ms", Value: ms(combine)},
		{Scenario: "he", Case: name, Params: params2, Metric: "bytes per client", Unit: "B", Value: float64(subBytes), Baseline: float64(4 * d), Ratio: float64(subBytes) / float64(4*d)},
		{Scenario: "he", Case: name, Params: params2, Metric: "peak heap", Unit: "MB", Value: float64(mem) / 1e6},
	}, nil
}

func dpCases(quick bool) []bcase {
	return []bcase{
		{"sampler/sigma=100", func() ([]Result, error) {
			g, _ := dp.NewDiscreteGaussianSigma(100)
			s, err := dp.NewSampler(nil)
			if err != nil {
				return nil, err
			}
			const n = 2_000_000
			t0 := time.Now()
			var sink int64
			for i := 0; i < n; i++ {
				sink += g.Sample(s)
			}
			el := time.Since(t0)
			buf := make([]byte, 8*n)
			t0 = time.Now()
			s2, _ := dp.NewSampler(nil)
			_ = s2
			io.ReadFull(rand.Reader, buf[:8*n/16])
			raw := time.Since(t0) * 16
			_ = sink
			rate := n / el.Seconds() / 1e6
			return []Result{{Scenario: "dp", Case: "sampler/sigma=100", Metric: "discrete Gaussian samples", Unit: "M/s", Value: rate,
				Baseline: n / raw.Seconds() / 1e6, Ratio: ratio(rate, n/raw.Seconds()/1e6)}}, nil
		}},
		{"accountants", func() ([]Result, error) {
			e := dp.Event{Mechanism: dp.GaussianMechanism, NoiseMultiplier: 1.1, SamplingRate: 0.01, Count: 1000}
			t0 := time.Now()
			if _, err := dp.Epsilon(dp.RDP, dp.AddRemove, 1e-5, e); err != nil {
				return nil, err
			}
			rdp := time.Since(t0)
			t0 = time.Now()
			if _, err := dp.Epsilon(dp.PLD, dp.AddRemove, 1e-5, e); err != nil {
				return nil, err
			}
			pld := time.Since(t0)
			ms := func(t time.Duration) float64 { return float64(t.Microseconds()) / 1000 }
			return []Result{
				{Scenario: "dp", Case: "accountants/z=1.1/q=0.01/T=1000", Metric: "RDP ε", Unit: "ms", Value: ms(rdp)},
				{Scenario: "dp", Case: "accountants/z=1.1/q=0.01/T=1000", Metric: "PLD ε", Unit: "ms", Value: ms(pld)},
			}, nil
		}},
	}
}

func e2eCases(quick bool) []bcase {
	n, d := 5, 10_000
	if !quick {
		n, d = 20, 100_000
	}
	var out []bcase
	for _, mode := range []protocol.Mode{protocol.Plain, protocol.SecAgg, protocol.HE} {
		name := fmt.Sprintf("%s/n=%d/d=%d", mode, n, d)
		out = append(out, bcase{name, func() ([]Result, error) { return e2eRound(name, mode, n, d) }})
	}
	return out
}

// utilityCases train on the embedded data for several ε and seeds.
func utilityCases(quick bool) []bcase {
	seeds := 5
	if quick {
		seeds = 2
	}
	var out []bcase
	for _, data := range []string{"wdbc", "diabetes"} {
		out = append(out, bcase{data, func() ([]Result, error) { return utility(data, seeds, quick) }})
	}
	return out
}

// Epsilons of the utility curve; 0 means no DP.
var Epsilons = []float64{0.5, 1, 2, 3, 5, 10, 0}

func utility(data string, seeds int, quick bool) ([]Result, error) {
	d, err := fl.LoadBuiltin(data)
	if err != nil {
		return nil, err
	}
	model, metric := "logistic", "accuracy"
	if d.Task == fl.Regression {
		model, metric = "linear", "RMSE"
	}
	pick := func(m fl.Metrics) float64 {
		if metric == "RMSE" {
			return m.RMSE
		}
		return m.Accuracy
	}
	eps := Epsilons
	if quick {
		eps = []float64{1, 3, 0}
	}
	var out []Result
	type acc struct{ xs []float64 }
	central, best := &acc{}, &acc{}
	curves := map[float64]*acc{}
	aucs := map[float64]*acc{} // classification: AUC of the federated models
	for seed := 0; seed < seeds; seed++ {
		tr, te, err := fl.StratifiedSplit(d, 0.25, uint64(seed))
		if err != nil {
			return nil, err
		}
		sites, err := fl.PartitionDirichlet(tr, 5, 0.5, 10, uint64(seed))
		if err != nil {
			return nil, err
		}
		c, err := local.Baseline(model, 0, tr, te, uint64(seed))
		if err != nil {
			return nil, err
		}
		central.xs = append(central.xs, pick(c))
		b := math.Inf(1)
		if metric == "accuracy" {
			b = 0
		}
		for _, s := range sites {
			m, err := local.Baseline(model, 0, s, te, uint64(seed))
			if err != nil {
				return nil, err
			}
			if metric == "accuracy" {
				b = math.Max(b, pick(m))
			} else {
				b = math.Min(b, pick(m))
			}
		}
		best.xs = append(best.xs, b)
		for _, e := range eps {
			cfg := local.Federation{Mode: protocol.SecAgg, Level: dp.RecordLevel, Epsilon: e, Delta: 1e-5, Rounds: 30,
				Model: model, Clip: 1, LearningRate: 1, Seed: uint64(seed)}
			if e > 0 {
				dir, err := tempDir()
				if err != nil {
					return nil, err
				}
				cfg.Dir = dir
			}
			s, err := local.Federate(context.Background(), cfg, sites, te)
			if cfg.Dir != "" {
				os.RemoveAll(cfg.Dir)
			}
			if err != nil {
				return nil, err
			}
			if curves[e] == nil {
				curves[e], aucs[e] = &acc{}, &acc{}
			}
			curves[e].xs = append(curves[e].xs, pick(s.Test))
			aucs[e].xs = append(aucs[e].xs, s.Test.AUC)
		}
	}
	add := func(name string, eps float64, a *acc) {
		m, sd := meanSD(a.xs)
		out = append(out, Result{Scenario: "utility", Case: data + "/" + name, Params: map[string]float64{"epsilon": eps, "seeds": float64(seeds)},
			Metric: metric, Value: m, Spread: sd})
	}
	add("centralized", math.Inf(1), central)
	add("best hospital alone", math.Inf(1), best)
	keys := make([]float64, 0, len(curves))
	for e := range curves {
		keys = append(keys, e)
	}
	sort.Float64s(keys)
	for _, e := range keys {
		name := fmt.Sprintf("federated DP eps=%g", e)
		pe := e
		if e == 0 {
			name, pe = "federated no DP", math.Inf(1)
		}
		add(name, pe, curves[e])
		if metric == "accuracy" {
			m, sd := meanSD(aucs[e].xs)
			out = append(out, Result{Scenario: "utility", Case: data + "/" + name, Params: map[string]float64{"epsilon": pe, "seeds": float64(seeds)},
				Metric: "AUC", Value: m, Spread: sd})
		}
	}
	return out, nil
}

func meanSD(xs []float64) (float64, float64) {
	var m float64
	for _, x := range xs {
		m += x / float64(len(xs))
	}
	var v float64
	for _, x := range xs {
		v += (x - m) * (x - m)
	}
	if len(xs) > 1 {
		v /= float64(len(xs) - 1)
	}
	return m, math.Sqrt(v)
}
