package dp

import (
	"math"
	"testing"
)

// TestPatientEpsilonIndependent checks the per-patient ε of client-level
// rounds against an independent computation: the RDP curve of a Gaussian
// with sensitivity 2C, α·(2C)²/(2σ²) per round (Mironov 2017, Prop. 7),
// converted with the bound of Balle et al. 2020 (Thm. 21) and
// minimised over a fine grid of orders written out here.
func TestPatientEpsilonIndependent(t *testing.T) {
	for _, tc := range []struct {
		z      float64
		rounds int
		delta  float64
	}{{5, 30, 1e-5}, {2, 10, 1e-6}, {12, 100, 1e-5}} {
		ev := Event{Mechanism: GaussianMechanism, NoiseMultiplier: tc.z, SamplingRate: 1, Count: tc.rounds}
		got, err := PatientEpsilon(RDP, tc.delta, ev)
		if err != nil {
			t.Fatal(err)
		}
		want := math.Inf(1)
		for a := 1.01; a < 2000; a *= 1.001 {
			rdp := float64(tc.rounds) * a * 4 / (2 * tc.z * tc.z)
			eps := rdp + math.Log((a-1)/a) - (math.Log(tc.delta)+math.Log(a))/(a-1)
			want = math.Min(want, eps)
		}
		if math.Abs(got-want) > 0.01*want {
			t.Errorf("z=%v rounds=%d: per-patient ε %.4f, independent %.4f", tc.z, tc.rounds, got, want)
		}
		hosp, _ := Epsilon(RDP, AddRemove, tc.delta, ev)
		if !(got > hosp) {
			t.Errorf("z=%v: per-patient ε %.4f is not above the hospital's %.4f", tc.z, got, hosp)
		}
	}
}
