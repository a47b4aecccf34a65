package protocol

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
)

var netLarge = flag.Bool("protocol.large", false, "benchmark network rounds at d = 1e6 with 20 sites (minutes)")

// BenchmarkNetworkRound times whole client-level rounds over gRPC with
// mutual TLS on loopback: every site sends an update of d values trained
// elsewhere; secagg is compared with plain (NOT PRIVATE) in the same run.
// It reports milliseconds per round and bytes each site sends per round
// against the raw float32 size of its update.
func BenchmarkNetworkRound(b *testing.B) {
	n, d := 5, 1<<14
	if *netLarge {
		n, d = 20, 1_000_000
	}
	for _, mode := range []Mode{Plain, SecAgg, HE} {
		d := d
		if mode == HE && *netLarge {
			// Every decryptor receives and re-adds all n submissions:
			// 20 × 32 MB at d = 1e6 to each of 11 decryptors is beyond
			// this machine's loopback budget; measured at d = 1e5.
			d = 100_000
		}
		b.Run(fmt.Sprintf("mode=%s/n=%d/d=%d", mode, n, d), func(b *testing.B) {
			const rounds = 4
			var stamps []time.Time
			var bytesAt []int64
			var sites []*Site
			f := newFederation(b, n, CoordinatorConfig{Mode: mode, Level: dp.ClientLevel, Rounds: rounds, Clip: 1, LearningRate: 1,
				Model: "linear", Features: d - 1, PhaseTimeout: time.Minute, JoinWait: 5 * time.Second,
				Progress: func(RoundResult) {
					stamps = append(stamps, time.Now())
					var sent int64
					for _, s := range sites {
						sent += s.BytesSent()
					}
					bytesAt = append(bytesAt, sent)
				}})
			rng := rand.New(rand.NewPCG(1, 2))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for i := 1; i <= n; i++ {
				c := f.siteConfig(i)
				c.Data, c.EpsilonCap, c.AllowNoDP, c.AllowPlain = nil, 0, true, true
				c.Update = make([]float64, d)
				for k := range c.Update {
					c.Update[k] = rng.NormFloat64() * 1e-3
				}
				s, err := NewSite(c)
				if err != nil {
					b.Fatal(err)
				}
				sites = append(sites, s)
				go s.Run(ctx)
			}
			b.ResetTimer()
			sum, err := f.coord.Run(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if okRounds(sum) != rounds || len(stamps) != rounds {
				b.Fatalf("rounds %+v", sum.Rounds)
			}
			// Training rounds after the first: the statistics round and
			// connection set-up are excluded.
			per := stamps[rounds-1].Sub(stamps[0]) / (rounds - 1)
			bytes := float64(bytesAt[rounds-1]-bytesAt[0]) / float64(n) / float64(rounds-1)
			b.ReportMetric(float64(per.Microseconds())/1000, "ms/round")
			b.ReportMetric(bytes, "bytes/site/round")
			b.ReportMetric(bytes/float64(4*d), "x-float32")
		})
	}
}
