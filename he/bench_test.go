package he

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tuneinsight/lattigo/v5/ring"
)

var largeBench = flag.Bool("he.large", false, "benchmark d = 2^20 and N = 20 too (minutes, ~1 GB)")

var sinkBytes []byte
var sinkF32 float32

// BenchmarkHE times one round's steps for d values and N parties with
// t = ⌊N/2⌋+1: one client's encryption of its whole update, the
// coordinator's Add of one submission (decode, signature check, addition),
// one decryptor's key-switch share of the whole sum (share), the same with
// the checks DecryptShare does first (verifying and re-adding all N
// submissions: decrypt-share), and combine + decode. BenchmarkPlainSum32
// is the baseline.
func BenchmarkHE(b *testing.B) {
	dims := []int{1 << 16}
	parties := []int{5}
	if *largeBench {
		dims = append(dims, 1<<20)
		parties = append(parties, 20)
	}
	for _, n := range parties {
		g := newGroup(b, Config{Preset: Compact, Parties: n, Threshold: n/2 + 1})
		for _, d := range dims {
			rng := rand.New(rand.NewPCG(uint64(n), uint64(d)))
			v := make([]float64, d)
			for i := range v {
				v[i] = rng.Float64()*2 - 1
			}
			name := fmt.Sprintf("d=2^%d/N=%d", log2i(d), n)
			round := uint64(1)
			subs := make([][]byte, n)
			for i := range subs {
				var err error
				if subs[i], err = g.parties[i].Encrypt(round, testContext, v, NoNoise); err != nil {
					b.Fatal(err)
				}
			}
			k := (d + g.params.ValuesPerCiphertext() - 1) / g.params.ValuesPerCiphertext()
			b.Run(name+"/encrypt", func(b *testing.B) {
				b.SetBytes(int64(4 * d))
				for b.Loop() {
					s, err := g.parties[0].Encrypt(round, testContext, v, NoNoise)
					if err != nil {
						b.Fatal(err)
					}
					sinkBytes = s
				}
				b.ReportMetric(float64(len(subs[0]))/float64(d), "bytes/value")
				b.ReportMetric(float64(len(subs[0]))/float64(4*d), "x-float32")
			})
			b.Run(name+"/add", func(b *testing.B) {
				for b.Loop() {
					a, _ := NewAggregator(g.params, g.roster, g.crs, round, testContext)
					if err := a.Add(subs[0]); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(k), "ns/ciphertext")
			})
			agg, _ := NewAggregator(g.params, g.roster, g.crs, round, testContext)
			for _, s := range subs {
				if err := agg.Add(s); err != nil {
					b.Fatal(err)
				}
			}
			all := make([]int, n)
			for i := range all {
				all[i] = i + 1
			}
			req, err := agg.Request(all)
			if err != nil {
				b.Fatal(err)
			}
			dec := agg.req.decryptors
			sum := make([][2]ring.Poly, len(agg.sum))
			for c := range sum {
				sum[c] = [2]ring.Poly{*agg.sum[c][0].CopyNew(), *agg.sum[c][1].CopyNew()}
			}
			b.Run(name+"/share", func(b *testing.B) {
				for b.Loop() {
					s, err := g.parties[dec[0]-1].share(round, dec, sum)
					if err != nil {
						b.Fatal(err)
					}
					sinkBytes = s
				}
			})
			b.Run(name+"/decrypt-share", func(b *testing.B) {
				p := g.parties[dec[0]-1]
				for b.Loop() {
					delete(p.decrypted, round)
					p.decCount = 0
					s, err := p.DecryptShare(req, testContext)
					if err != nil {
						b.Fatal(err)
					}
					sinkBytes = s
				}
			})
			var shares [][]byte
			for _, id := range dec {
				p := g.parties[id-1]
				delete(p.decrypted, round)
				s, err := p.DecryptShare(req, testContext)
				if err != nil {
					b.Fatal(err)
				}
				shares = append(shares, s)
			}
			b.Run(name+"/combine", func(b *testing.B) {
				for b.Loop() {
					out, err := agg.Combine(shares)
					if err != nil {
						b.Fatal(err)
					}
					sinkF32 += float32(out[0])
				}
			})
		}
	}
}

// BenchmarkPlainSum32 is the baseline: adding one client's float32 update
// into a running sum.
func BenchmarkPlainSum32(b *testing.B) {
	for _, d := range []int{1 << 16, 1 << 20} {
		b.Run(fmt.Sprintf("d=2^%d", log2i(d)), func(b *testing.B) {
			x := make([]float32, d)
			sum := make([]float32, d)
			b.SetBytes(int64(4 * d))
			for b.Loop() {
				for i, v := range x {
					sum[i] += v
				}
			}
			sinkF32 += sum[0]
		})
	}
}

func log2i(d int) int {
	n := 0
	for d > 1 {
		d >>= 1
		n++
	}
	return n
}

// BenchmarkSetup times the whole key ceremony of N parties in one process
// (every party's work, run one after the other), for the compact preset and
// the network federation's n13-q120.
func BenchmarkSetup(b *testing.B) {
	for _, pr := range []Preset{Compact, N13} {
		for _, n := range []int{5} {
			b.Run(fmt.Sprintf("%s/N=%d", pr.Name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					newGroup(b, Config{Preset: pr, Parties: n, Threshold: n/2 + 1})
				}
			})
		}
	}
}
