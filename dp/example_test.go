package dp_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/dp/ledgertest"
)

// A privacy officer checks what 100 rounds of DP-SGD with sampling rate 1%
// and noise multiplier 1.1 cost, with both accountants.
func ExampleEpsilon() {
	e := dp.Event{Mechanism: dp.GaussianMechanism, NoiseMultiplier: 1.1, SamplingRate: 0.01, Count: 100}
	for _, acct := range []string{dp.RDP, dp.PLD} {
		eps, err := dp.Epsilon(acct, dp.AddRemove, 1e-5, e)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s: ε = %.3f (δ = 1e-5, add-remove)\n", acct, eps)
	}
	// Output:
	// rdp: ε = 0.956 (δ = 1e-5, add-remove)
	// pld: ε = 0.550 (δ = 1e-5, add-remove)
}

// Twenty sites, of which at least fourteen finish each round and up to three
// may collude with the coordinator: each site's noise share is sized so the
// eleven honest survivors alone reach σ = 1.2.
func ExampleDistribute() {
	p, err := dp.Distribute(dp.DistributedConfig{
		Sigma: 1.2, Clip: 1, Clients: 20, Threshold: 14, Colluders: 3, Dim: 10000, Bits: 32,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("each site: σ = %.4f; all 20 sites: σ = %.4f; honest shares counted: %d\n", p.LocalSigma, p.SumSigma, p.Honest)
	fmt.Printf("grid step 2^%.0f; effective noise multiplier %.4f\n", logb(p.Gamma), p.NoiseMultiplier)
	// Output:
	// each site: σ = 0.3618; all 20 sites: σ = 1.6181; honest shares counted: 11
	// grid step 2^-25; effective noise multiplier 1.2000
}

func logb(x float64) float64 {
	n := 0.0
	for x < 1 {
		x *= 2
		n--
	}
	return n
}

// A coordinator's ledger refuses the round that would pass its ε cap,
// before anything is released, and writes nothing for it.
func ExampleLedger_Charge() {
	dir, _ := os.MkdirTemp("", "ledger")
	defer os.RemoveAll(dir)
	_, key, _ := ed25519.GenerateKey(nil)
	l, err := dp.CreateLedger(filepath.Join(dir, "privacy.jsonl"), key,
		dp.LedgerOptions{Accountant: dp.RDP, Delta: 1e-5, Cap: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	for round := 1; ; round++ {
		_, err := l.Charge(ledgertest.Charge("demo", round, dp.ClientLevel, 5))
		if errors.Is(err, dp.ErrBudgetExceeded) {
			fmt.Printf("round %d refused; ε spent %.3f of 2\n", round, l.Spent())
			return
		}
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	// Output:
	// round 6 refused; ε spent 1.914 of 2
}
