package he

import (
	"errors"

	"github.com/fl-secure/fl-secure/dp"
)

type dpNoise struct {
	g *dp.GridGaussian
	s *dp.Sampler
}

// DPNoise returns the Noise that rounds an update to g's grid and adds the
// client's share of discrete Gaussian noise, drawn with s (see
// dp.Distribute for sizing the share and dp.GridGaussian for why no float
// Gaussian is used). CKKS then encodes the grid values; its own rounding and
// smudging errors come after the DP noise and are post-processing.
func DPNoise(g *dp.GridGaussian, s *dp.Sampler) Noise { return dpNoise{g, s} }

func (n dpNoise) AddNoise(v []float64) error {
	if n.g == nil || n.s == nil {
		return errors.New("he: DPNoise needs a grid Gaussian and a sampler")
	}
	return n.g.Add(n.s, v)
}

type noNoise struct{}

func (noNoise) AddNoise([]float64) error { return nil }

// NoNoise adds nothing. It exists so that sending an update without DP
// noise is a visible choice in the caller's code (tests, benchmarks, or a
// deployment whose noise is added elsewhere), never a default.
var NoNoise Noise = noNoise{}
