package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"os"
	"sync"
	"sync/atomic"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol"
	"github.com/fl-secure/fl-secure/protocol/wire"
	"github.com/fl-secure/fl-secure/secagg"
)

// SecAggConfig configures bare secure-aggregation rounds among sites in
// this process (fl-secure secagg). Sessions speak SecAgg over the complete
// graph (every pair of the round's members shares masks, Degree = n − 1)
// with the threshold ⌊m/2⌋ + 1 (at least Colluders + 1) for a round of m
// members: SecAgg+'s sparse graphs are costed at the engine level only
// (fl-secure bench).
type SecAggConfig struct {
	Clients int // 3 to 1000
	Rounds  int
	// Dim is the update length; its last coordinate carries the site's
	// weight, the others the weighted update.
	Dim  int
	Bits int // ring width: 32 (default) or 64
	// Dropout is the chance that a site drops out of a round, at a phase
	// drawn uniformly among the five of a SecAgg round.
	Dropout float64
	// Colluders is the number of sites assumed to collude with the
	// coordinator (0 to below the minimum cohort).
	Colluders int
	// MaxWeight bounds the sites' integer weights, drawn from 1 to
	// MaxWeight (0: as large as the ring allows, at most 1000).
	MaxWeight int
	// Clip bounds every coordinate of an unweighted update.
	Clip float64
	// Seed determines the updates, weights and dropouts; keys and masks
	// come from crypto/rand.
	Seed uint64
	// Dir receives the kits and states; empty: a temporary directory,
	// removed afterwards.
	Dir    string
	Logger *slog.Logger
}

// SecAggRow reports one secure-aggregation round (one attempt: a round
// that fails is retried by the coordinator and reported again).
type SecAggRow struct {
	Round   int `json:"round"`
	Clients int `json:"clients"`
	// Dropped counts the sites that closed their session during the round.
	Dropped int `json:"dropped"`
	// Survivors counts the sites whose update is in the opened sum.
	Survivors     int     `json:"survivors"`
	SurvivorSites []int   `json:"survivor_sites,omitempty"`
	Dim           int     `json:"dim"`
	Millis        float64 `json:"round_ms"`
	// MaxError is the largest difference between the opened sum and the
	// exact sum of the survivors' updates; ErrorBound is what randomized
	// rounding to the grid allows (survivors × grid step).
	MaxError   float64 `json:"max_error"`
	ErrorBound float64 `json:"error_bound"`
	// Status is "ok", or why nothing was opened ("below-cohort",
	// "failed").
	Status string `json:"status"`
}

// SecAggPlan is a checked SecAggConfig with the parameters a full round
// runs with.
type SecAggPlan struct {
	Config SecAggConfig
	// Degree and Threshold of a round all sites join; Corrupt is the
	// colluders the threshold tolerates.
	Degree, Threshold, Corrupt int
	// MinCohort is the fewest survivors a sum is opened with.
	MinCohort int
	// Gamma is the grid step updates are rounded to.
	Gamma float64
}

// ErrMismatch is returned when an opened sum differs from the exact sum
// of the survivors' updates by more than rounding allows.
var ErrMismatch = errors.New("local: an opened sum differs from the exact sum of the survivors' updates")

// gamma is the grid step of training rounds without noise (the
// coordinator's).
var gamma = math.Exp2(-16)

// PlanSecAgg checks c and fills in its defaults.
func PlanSecAgg(c SecAggConfig) (*SecAggPlan, error) {
	if c.Bits == 0 {
		c.Bits = 32
	}
	switch {
	case c.Clients < 3 || c.Clients > 1000:
		return nil, usagef("local: clients = %d, want 3 to 1000", c.Clients)
	case c.Rounds < 1 || c.Rounds > 100000:
		return nil, usagef("local: rounds = %d, want 1 to 100000", c.Rounds)
	case c.Dim < 2 || c.Dim > secagg.MaxLength:
		return nil, usagef("local: dim = %d, want 2 to %d (the last coordinate is the weight)", c.Dim, secagg.MaxLength)
	case c.Bits != 32 && c.Bits != 64:
		return nil, usagef("local: bits = %d, want 32 or 64", c.Bits)
	case !(c.Dropout >= 0 && c.Dropout < 1):
		return nil, usagef("local: dropout = %v, want 0 ≤ rate < 1", c.Dropout)
	case !(c.Clip > 0) || math.IsInf(c.Clip, 0):
		return nil, usagef("local: clip = %v, want a positive bound", c.Clip)
	case c.MaxWeight < 0:
		return nil, usagef("local: max weight = %d, want at least 1", c.MaxWeight)
	}
	// Every site holds its update, the model and its masks; the
	// coordinator every masked input: about 64 bytes per site and
	// coordinate.
	if need := 64 * float64(c.Clients) * float64(c.Dim); need > 16<<30 {
		return nil, usagef("local: clients × dim = %d × %d needs about %.0f GiB in one process, more than the 16 GiB a simulation may use", c.Clients, c.Dim, need/(1<<30))
	}
	k := max(3, c.Clients/2+1)
	if c.Colluders < 0 || c.Colluders >= k {
		return nil, usagef("local: colluders = %d, want 0 to %d (below the minimum cohort %d)", c.Colluders, k-1, k)
	}
	// The opened sum must stay inside the ring's signed range, with room
	// for rounding: n × weight × clip < 2^(bits−1) γ / 2.
	room := math.Exp2(float64(c.Bits-2)) * gamma / (float64(c.Clients) * math.Max(c.Clip, 1))
	if c.MaxWeight == 0 {
		c.MaxWeight = int(math.Min(1000, math.Floor(room)))
	}
	if c.MaxWeight < 1 || float64(c.MaxWeight) > room {
		return nil, usagef("local: %d clients with weights up to %d and clip %v overflow a %d-bit ring at grid step 2^-16; use --bits 64, fewer clients or a smaller clip", c.Clients, max(c.MaxWeight, 1), c.Clip, c.Bits)
	}
	return &SecAggPlan{Config: c, Degree: c.Clients - 1, Threshold: max(c.Clients/2+1, c.Colluders+1),
		Corrupt: c.Colluders, MinCohort: k, Gamma: gamma}, nil
}

// SecAgg plans c (PlanSecAgg) and runs its rounds (SecAggPlan.Run),
// calling row after each round.
func SecAgg(ctx context.Context, c SecAggConfig, row func(SecAggRow)) error {
	p, err := PlanSecAgg(c)
	if err != nil {
		return err
	}
	return p.Run(ctx, row)
}

// update is site's update in round r: a weight w in [1, MaxWeight] and w
// times a vector uniform in [−Clip, Clip]^(Dim−1), then w.
func (p *SecAggPlan) update(r, site int) []float64 {
	c := p.Config
	rng := mrand.New(mrand.NewPCG(c.Seed, uint64(r)<<20|uint64(site)))
	w := float64(1 + rng.IntN(c.MaxWeight))
	u := make([]float64, c.Dim)
	for k := range u[:c.Dim-1] {
		u[k] = w * c.Clip * (2*rng.Float64() - 1)
	}
	u[c.Dim-1] = w
	return u
}

// Run runs the rounds through the real coordinator and sites over
// in-memory sessions, calls row after each round (and each failed
// attempt), and checks every opened sum against the exact sum of the
// survivors' updates: an error wrapping ErrMismatch if one differs by more
// than rounding allows.
func (p *SecAggPlan) Run(ctx context.Context, row func(SecAggRow)) error {
	c := p.Config
	dir := c.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "fl-secure-secagg-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	var (
		mu       sync.Mutex
		plan     = map[int]int{} // site → engine message it drops before (this round)
		droppers = map[int]*dropper{}
		mismatch error
	)
	// dropped counts the sessions closed by a simulated drop since the
	// last row (a retry of a round is not charged its first attempt's).
	reported := map[*dropper]bool{}
	dropped := func() int {
		n := 0
		for _, d := range droppers {
			if d.dropped.Load() && !reported[d] {
				reported[d] = true
				n++
			}
		}
		return n
	}
	progress := func(res protocol.RoundResult) {
		mu.Lock()
		out := SecAggRow{Round: res.Round, Clients: c.Clients, Dropped: dropped(), Survivors: len(res.Survivors),
			SurvivorSites: res.Survivors, Dim: c.Dim, Millis: res.Seconds * 1000, Status: res.Status}
		mu.Unlock()
		if res.Status == "ok" {
			exact := make([]float64, c.Dim)
			for _, s := range res.Survivors {
				for k, x := range p.update(res.Round, s) {
					exact[k] += x
				}
			}
			for k, x := range res.Sum {
				out.MaxError = math.Max(out.MaxError, math.Abs(x-exact[k]))
			}
			out.ErrorBound = float64(len(res.Survivors)) * gamma
			if out.MaxError > out.ErrorBound && mismatch == nil {
				mismatch = fmt.Errorf("%w: round %d, error %g over the bound %g", ErrMismatch, res.Round, out.MaxError, out.ErrorBound)
			}
		}
		if row != nil {
			row(out)
		}
	}
	rng := mrand.New(mrand.NewPCG(c.Seed, 0xd20))
	all := make([]int, c.Clients)
	for i := range all {
		all[i] = i + 1
	}
	schedule := func(r int) []int {
		mu.Lock()
		defer mu.Unlock()
		clear(plan)
		for _, s := range all {
			if rng.Float64() < c.Dropout {
				plan[s] = 1 + rng.IntN(5)
			}
		}
		for s, d := range droppers {
			if d.dropped.Load() {
				continue // reconnects with a new session
			}
			d.arm(plan[s])
		}
		return all
	}
	// The largest update's L2 norm: nothing is clipped.
	clip := float64(c.MaxWeight) * math.Max(c.Clip, 1) * math.Sqrt(float64(c.Dim)) * 2
	cc := protocol.CoordinatorConfig{Mode: protocol.SecAgg, Level: dp.ClientLevel, Rounds: c.Rounds, Clip: clip, LearningRate: 1,
		Model: "linear", Features: c.Dim - 1, MinCohort: p.MinCohort, Colluders: c.Colluders, Bits: c.Bits,
		Progress: progress, Logger: c.Logger}
	for range c.Dim {
		// The clients bring updates, not data: their statistics are zero.
		cc.Ranges = append(cc.Ranges, fl.Range{Lo: -1, Hi: 1})
	}
	fed, err := newFederation(dir, c.Clients, cc, func(i int) protocol.SiteConfig {
		return protocol.SiteConfig{AllowNoDP: true, Level: dp.ClientLevel, MinCohort: p.MinCohort, Colluders: c.Colluders, Logger: c.Logger,
			Trainer: func(q protocol.TrainRequest) (protocol.TrainResult, error) {
				return protocol.TrainResult{Update: p.update(q.Round, i)}, nil
			}}
	})
	if err != nil {
		return err
	}
	defer fed.close()
	fed.wrap = func(site int, s protocol.SiteStream) protocol.SiteStream {
		mu.Lock()
		defer mu.Unlock()
		d := &dropper{SiteStream: s}
		d.arm(plan[site])
		droppers[site] = d
		return d
	}
	if _, err := fed.run(ctx, schedule); err != nil {
		return err
	}
	return mismatch
}

// A dropper is a site's end of a session that closes the session instead
// of sending the site's at-th engine message of the round (0: never).
type dropper struct {
	protocol.SiteStream
	at, sent atomic.Int32
	dropped  atomic.Bool
}

// arm sets the engine message of the coming round to drop before.
func (d *dropper) arm(at int) {
	d.sent.Store(0)
	d.at.Store(int32(at))
}

// Dropped reports whether the session was closed by a simulated drop.
func (d *dropper) Dropped() bool { return d.dropped.Load() }

func (d *dropper) Send(m *wire.SiteMessage) error {
	if m.GetEngine() != nil {
		if at := d.at.Load(); at > 0 && d.sent.Add(1) == at {
			d.dropped.Store(true)
			d.SiteStream.Close()
			return io.EOF
		}
	}
	return d.SiteStream.Send(m)
}
