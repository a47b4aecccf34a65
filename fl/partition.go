package fl

import (
	"fmt"
	"math/rand/v2"
	"sort"

	"gonum.org/v1/gonum/stat/distuv"
)

// The functions in this file shuffle and split data. They simulate how
// data is spread over hospitals and use math/rand/v2 with a caller's seed:
// they are for simulations and experiments, never for anything secret.

// StratifiedSplit splits d into train and test sets, holding out testFrac
// of each class (or of the rows, for regression), shuffled with seed.
func StratifiedSplit(d *Dataset, testFrac float64, seed uint64) (train, test *Dataset, err error) {
	if !(testFrac > 0 && testFrac < 1) {
		return nil, nil, fmt.Errorf("fl: test fraction %v outside (0, 1)", testFrac)
	}
	rng := rand.New(rand.NewPCG(seed, 0x5b11))
	groups := map[int][]int{}
	for i, y := range d.Y {
		k := 0
		if d.Task != Regression {
			k = int(y)
		}
		groups[k] = append(groups[k], i)
	}
	keys := make([]int, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var tr, te []int
	for _, k := range keys {
		idx := groups[k]
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		nt := int(float64(len(idx))*testFrac + 0.5)
		te = append(te, idx[:nt]...)
		tr = append(tr, idx[nt:]...)
	}
	if len(tr) == 0 || len(te) == 0 {
		return nil, nil, fmt.Errorf("fl: a %v test split of %d rows leaves a side empty", testFrac, d.Rows())
	}
	rng.Shuffle(len(tr), func(i, j int) { tr[i], tr[j] = tr[j], tr[i] })
	return d.Subset(tr), d.Subset(te), nil
}

// PartitionIID deals d's rows at random into n sites of near-equal size.
func PartitionIID(d *Dataset, n int, seed uint64) ([]*Dataset, error) {
	if n < 1 || n > d.Rows() {
		return nil, fmt.Errorf("fl: %d sites for %d rows", n, d.Rows())
	}
	rng := rand.New(rand.NewPCG(seed, 0x11d))
	perm := rng.Perm(d.Rows())
	sites := make([][]int, n)
	for i, r := range perm {
		sites[i%n] = append(sites[i%n], r)
	}
	out := make([]*Dataset, n)
	for i := range out {
		out[i] = d.Subset(sites[i])
	}
	return out, nil
}

// PartitionDirichlet splits d into n sites with label skew: for every class
// the share of its rows at each site is drawn from Dirichlet(α, …, α) (Hsu,
// Qi, Brown, "Measuring the Effects of Non-Identical Data Distribution for
// Federated Visual Classification", 2019). Small α gives sites dominated by
// one class. Regression targets are binned at their quartiles first. Every
// site gets at least minRows rows (draws are repeated until it does).
func PartitionDirichlet(d *Dataset, n int, alpha float64, minRows int, seed uint64) ([]*Dataset, error) {
	if n < 1 || n*minRows > d.Rows() {
		return nil, fmt.Errorf("fl: %d sites of at least %d rows from %d rows", n, minRows, d.Rows())
	}
	if !(alpha > 0) {
		return nil, fmt.Errorf("fl: Dirichlet α must be positive, got %v", alpha)
	}
	rng := rand.New(rand.NewPCG(seed, 0xd1c))
	labels := make([]int, d.Rows())
	if d.Task == Regression {
		ys := append([]float64(nil), d.Y...)
		sort.Float64s(ys)
		q := []float64{ys[len(ys)/4], ys[len(ys)/2], ys[3*len(ys)/4]}
		for i, y := range d.Y {
			labels[i] = sort.SearchFloat64s(q, y)
		}
	} else {
		for i, y := range d.Y {
			labels[i] = int(y)
		}
	}
	classes := map[int][]int{}
	for i, c := range labels {
		classes[c] = append(classes[c], i)
	}
	keys := make([]int, 0, len(classes))
	for k := range classes {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	gamma := distuv.Gamma{Alpha: alpha, Beta: 1, Src: rng}
	for try := 0; try < 1000; try++ {
		sites := make([][]int, n)
		for _, k := range keys {
			idx := append([]int(nil), classes[k]...)
			rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
			w := make([]float64, n)
			var tot float64
			for j := range w {
				w[j] = gamma.Rand()
				tot += w[j]
			}
			start := 0
			var acc float64
			for j := range w {
				acc += w[j] / tot
				end := int(acc*float64(len(idx)) + 0.5)
				if j == n-1 {
					end = len(idx)
				}
				end = max(start, min(end, len(idx)))
				sites[j] = append(sites[j], idx[start:end]...)
				start = end
			}
		}
		ok := true
		for _, s := range sites {
			if len(s) < minRows {
				ok = false
			}
		}
		if ok {
			out := make([]*Dataset, n)
			for i := range out {
				rng.Shuffle(len(sites[i]), func(a, b int) { sites[i][a], sites[i][b] = sites[i][b], sites[i][a] })
				out[i] = d.Subset(sites[i])
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("fl: no Dirichlet(%v) split into %d sites gave every site %d rows in 1000 draws", alpha, n, minRows)
}
