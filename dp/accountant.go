package dp

import (
	"fmt"
	"math"
)

// An Accountant composes privacy-consuming events and reports (ε, δ).
// Implementations: *RDPAccountant and *PLDAccountant.
type Accountant interface {
	// Name is "rdp" or "pld", as recorded in the ledger.
	Name() string
	// Relation is the neighbouring relation of every guarantee reported.
	Relation() Neighbouring
	// Compose adds an event, or returns an error and changes nothing.
	Compose(Event) error
	// Epsilon returns the ε of everything composed so far at δ.
	Epsilon(delta float64) (float64, error)
}

// Accountant names.
const (
	RDP = "rdp"
	PLD = "pld"
)

// NewAccountant returns an empty accountant by name ("rdp" or "pld").
func NewAccountant(name string, n Neighbouring) (Accountant, error) {
	if n != AddRemove && n != ReplaceOne {
		return nil, fmt.Errorf("dp: unknown neighbouring relation %d", int(n))
	}
	switch name {
	case RDP:
		return NewRDPAccountant(n), nil
	case PLD:
		return NewPLDAccountant(n, 0)
	}
	return nil, fmt.Errorf("dp: unknown accountant %q (want rdp or pld)", name)
}

// Epsilon returns the ε at δ of the events composed by the named accountant.
func Epsilon(accountant string, n Neighbouring, delta float64, events ...Event) (float64, error) {
	a, err := NewAccountant(accountant, n)
	if err != nil {
		return 0, err
	}
	for _, e := range events {
		if err := a.Compose(e); err != nil {
			return 0, err
		}
	}
	return a.Epsilon(delta)
}

// Calibration is the answer of Calibrate.
type Calibration struct {
	NoiseMultiplier float64 // the smallest multiplier found that meets the target
	Epsilon         float64 // the ε it achieves, ≤ the target
}

// maxMultiplier bounds calibration's search.
const maxMultiplier = 1e6

// Calibrate returns the smallest noise multiplier z (to 1e-8 relative) for
// which steps events {mech, z, q} meet (target, δ) with the named
// accountant. The answer always meets the target: the search keeps a
// bracket [z_lo, z_hi] with ε(z_lo) > target ≥ ε(z_hi) and returns z_hi.
func Calibrate(accountant string, n Neighbouring, mech Mechanism, target, delta float64, steps int, q float64) (Calibration, error) {
	if !(target > 0) || math.IsInf(target, 0) {
		return Calibration{}, fmt.Errorf("dp: target ε must be positive and finite, got %v", target)
	}
	if err := checkDelta(delta); err != nil {
		return Calibration{}, err
	}
	eps := func(z float64) (float64, error) {
		return Epsilon(accountant, n, delta, Event{mech, z, q, steps})
	}
	// Validate everything but z once, with z = 1.
	if _, err := eps(1); err != nil {
		return Calibration{}, err
	}
	lo, hi := 1.0, 1.0
	ehi, _ := eps(hi)
	for ehi > target {
		lo, hi = hi, hi*2
		if hi > maxMultiplier {
			return Calibration{}, fmt.Errorf("dp: no noise multiplier up to %g reaches ε = %v at δ = %v in %d steps", maxMultiplier, target, delta, steps)
		}
		ehi, _ = eps(hi)
	}
	elo := math.Inf(1)
	if lo == hi {
		for {
			lo /= 2
			if lo < 1e-3 {
				return Calibration{NoiseMultiplier: hi, Epsilon: ehi}, nil
			}
			var err error
			if elo, err = eps(lo); err != nil {
				return Calibration{}, err
			}
			if elo > target {
				break
			}
			hi, ehi = lo, elo
		}
	} else {
		elo, _ = eps(lo)
	}
	// Illinois (modified regula falsi) on log ε against log z, with a
	// bisection step whenever ε(z_lo) is infinite.
	f := func(e float64) float64 { return math.Log(e) - math.Log(target) }
	flo, fhi := f(elo), f(ehi)
	side := 0
	for hi-lo > 1e-8*hi {
		var z float64
		if math.IsInf(flo, 1) || flo == fhi {
			z = math.Sqrt(lo * hi)
		} else {
			llo, lhi := math.Log(lo), math.Log(hi)
			z = math.Exp(lhi - fhi*(lhi-llo)/(fhi-flo))
			if !(z > lo && z < hi) {
				z = math.Sqrt(lo * hi)
			}
		}
		e, err := eps(z)
		if err != nil {
			return Calibration{}, err
		}
		if fz := f(e); e > target {
			lo, flo = z, fz
			if side == -1 {
				fhi /= 2
			}
			side = -1
		} else {
			hi, ehi, fhi = z, e, fz
			if side == 1 {
				flo /= 2
			}
			side = 1
		}
	}
	return Calibration{NoiseMultiplier: hi, Epsilon: ehi}, nil
}
