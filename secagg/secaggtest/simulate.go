package secaggtest

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/fl-secure/fl-secure/secagg"
)

// Config describes a simulation: Rounds rounds of secure aggregation among
// Clients in-process clients holding random update vectors of Dim
// coordinates, each dropping out with probability Dropout per round at a
// uniformly chosen phase.
type Config struct {
	Clients, Rounds, Dim int
	Dropout              float64 // per client and round
	Corruption           float64 // colluding fraction the parameters must tolerate
	Degree, Threshold    int     // 0: derived with secagg.Recommend
	Complete             bool    // force the complete graph (classic SecAgg)
	Bits                 int     // ring Z_2^Bits
	Clip                 float64 // coordinates are clipped to [−Clip, Clip]
	MaxWeight            uint64  // sample counts are drawn from [1, MaxWeight]
	Seed                 uint64  // seeds the simulated data and dropouts only
}

// Validate names the first field that is out of range.
func (c Config) Validate() error {
	switch {
	case c.Clients < 3 || c.Clients > secagg.MaxClients:
		return fmt.Errorf("clients = %d, want 3 to %d", c.Clients, secagg.MaxClients)
	case c.Rounds < 1:
		return fmt.Errorf("rounds = %d, want at least 1", c.Rounds)
	case c.Dim < 1 || c.Dim >= secagg.MaxLength:
		return fmt.Errorf("dim = %d, want 1 to %d", c.Dim, secagg.MaxLength-1)
	case !(c.Dropout >= 0 && c.Dropout < 1):
		return fmt.Errorf("dropout = %v, want 0 ≤ rate < 1", c.Dropout)
	case c.Degree < 0 || c.Threshold < 0:
		return fmt.Errorf("degree and threshold must not be negative")
	case c.MaxWeight < 1:
		return fmt.Errorf("max weight = %d, want at least 1", c.MaxWeight)
	}
	// Every client's update, encoding and masked copy live in this one
	// process: about 24 bytes per coordinate per client.
	if need := 24 * float64(c.Clients) * float64(c.Dim+1); need > 16<<30 {
		return fmt.Errorf("clients × dim = %d × %d needs about %.0f GiB in one process, more than the 16 GiB a simulation may use", c.Clients, c.Dim, need/(1<<30))
	}
	return nil
}

// Plan is the parameter choice of a simulation.
type Plan struct {
	Params      secagg.Params
	Quant       secagg.QuantParams
	Recommended *secagg.Plan // nil when Degree and Threshold were given
}

// Row reports one simulated round.
type Row struct {
	Round      int     `json:"round"`
	Clients    int     `json:"clients"`
	Dropped    int     `json:"dropped"`
	Survivors  int     `json:"survivors"`
	Dim        int     `json:"d"`
	ClientMs   float64 `json:"client_ms"`
	ServerMs   float64 `json:"server_ms"`
	MaxError   float64 `json:"max_error"`
	ErrorBound float64 `json:"error_bound"`
	Status     string  `json:"status"` // "ok" or "below-threshold"
	Detail     string  `json:"detail,omitempty"`
}

// ErrMismatch is returned when an unmasked sum differs from the plaintext
// sum of the same survivors' encoded inputs.
var ErrMismatch = errors.New("secaggtest: unmasked sum differs from the plaintext sum")

// NewPlan derives the round and quantizer parameters of a simulation.
func NewPlan(c Config) (Plan, error) {
	if err := c.Validate(); err != nil {
		return Plan{}, err
	}
	var pl Plan
	p := secagg.Params{Clients: c.Clients, Degree: c.Degree, Threshold: c.Threshold, Length: c.Dim + 1, Bits: c.Bits}
	if c.Complete && p.Degree == 0 {
		p.Degree = c.Clients - 1
	}
	if p.Degree == 0 || p.Threshold == 0 {
		rec, err := secagg.Recommend(c.Clients, c.Dropout, c.Corruption, c.Complete || p.Degree == c.Clients-1)
		if err != nil {
			return Plan{}, err
		}
		if p.Degree == 0 {
			p.Degree = rec.Degree
		}
		if p.Threshold == 0 {
			p.Threshold = rec.Threshold
			if p.Degree != rec.Degree {
				p.Threshold = p.Degree/2 + 1
			}
		}
		p.Corrupt = rec.Corrupt
		pl.Recommended = &rec
	} else {
		p.Corrupt = int(math.Ceil(c.Corruption * float64(c.Clients)))
	}
	if err := p.Validate(); err != nil {
		return Plan{}, err
	}
	pl.Params = p
	pl.Quant = secagg.QuantParams{Clip: c.Clip, Bits: c.Bits, MaxClients: c.Clients, MaxWeight: c.MaxWeight}
	q, err := secagg.NewQuantizer(pl.Quant)
	if err != nil {
		return Plan{}, err
	}
	pl.Quant = q.Params()
	return pl, nil
}

// Simulate runs the simulation and calls report after each round. It
// returns an error wrapping ErrMismatch if any unmasked sum is wrong, or the
// error of a round that failed other than by dropping below threshold.
func Simulate(c Config, report func(Row)) error {
	pl, err := NewPlan(c)
	if err != nil {
		return err
	}
	q, _ := secagg.NewQuantizer(pl.Quant)
	// Long-term identities, as provisioned once per hospital.
	keys := make([]ed25519.PrivateKey, c.Clients)
	pubs := make([]ed25519.PublicKey, c.Clients)
	for i := range keys {
		pubs[i], keys[i], err = ed25519.GenerateKey(nil)
		if err != nil {
			return err
		}
	}
	roster, err := secagg.NewRoster(pubs)
	if err != nil {
		return err
	}
	// math/rand draws the simulated data and dropouts only; every key, mask
	// and rounding bit comes from crypto/rand.
	rng := rand.New(rand.NewPCG(c.Seed, 0x5eca66))
	for r := 1; r <= c.Rounds; r++ {
		p := pl.Params
		p.Round = uint64(r)
		xs := make([][]float64, c.Clients)
		ws := make([]uint64, c.Clients)
		inputs := make([][]uint64, c.Clients)
		for i := range xs {
			xs[i] = make([]float64, c.Dim)
			for j := range xs[i] {
				xs[i][j] = (2*rng.Float64() - 1) * 1.2 * c.Clip // some coordinates get clipped
			}
			ws[i] = 1 + rng.Uint64N(c.MaxWeight)
			if inputs[i], err = q.Encode(xs[i], ws[i], nil); err != nil {
				return err
			}
		}
		drop := make([]Phase, c.Clients)
		dropped := 0
		for i := range drop {
			if rng.Float64() < c.Dropout {
				drop[i] = Phase(1 + rng.IntN(int(AfterConsistency)))
				dropped++
			}
		}
		res := Drive(p, keys, roster, inputs, drop, nil)
		row := Row{Round: r, Clients: c.Clients, Dropped: dropped, Dim: c.Dim, Survivors: len(res.Survivors)}
		var total time.Duration
		active := 0
		for i, t := range res.ClientTime {
			if drop[i] != BeforeAdvert {
				total += t
				active++
			}
		}
		if active > 0 {
			row.ClientMs = float64(total.Microseconds()) / 1e3 / float64(active)
		}
		row.ServerMs = float64(res.ServerTime.Microseconds()) / 1e3
		switch {
		case errors.Is(res.Err, secagg.ErrBelowThreshold):
			row.Status, row.Detail = "below-threshold", res.Err.Error()
			row.Survivors = 0
			report(row)
			continue
		case res.Err != nil:
			return fmt.Errorf("round %d: %w", r, res.Err)
		}
		// The ring sum must be exact.
		want := make([]uint64, p.Length)
		for _, id := range res.Survivors {
			for j, v := range inputs[id-1] {
				want[j] += v
			}
		}
		mask := uint64(math.MaxUint64)
		if p.Bits == 32 {
			mask = 1<<32 - 1
		}
		for j := range want {
			want[j] &= mask
		}
		if !slices.Equal(res.Sum, want) {
			return fmt.Errorf("round %d: %w", r, ErrMismatch)
		}
		// The decoded weighted sum is within one grid step per client of
		// the float sum of the clipped updates.
		got, _, err := q.Decode(res.Sum)
		if err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		for j := range got {
			exact := 0.0
			for _, id := range res.Survivors {
				exact += float64(ws[id-1]) * math.Max(-c.Clip, math.Min(c.Clip, xs[id-1][j]))
			}
			row.MaxError = math.Max(row.MaxError, math.Abs(got[j]-exact))
		}
		row.ErrorBound = float64(len(res.Survivors)) / pl.Quant.Scale
		row.Status = "ok"
		report(row)
	}
	return nil
}
