package secagg

import (
	"crypto/sha256"
	"slices"

	"github.com/fl-secure/fl-secure/internal/prg"
)

// graph is the neighbour graph of a round: the Harary graph H(k, m) over the
// m clients that advertised keys, with positions assigned by a uniformly
// random permutation (the "random Harary graph" of Bell et al. 2020). Node at
// position p is adjacent to positions p±1, …, p±k/2 (mod m). k is even
// (Params.Validate): the odd-degree Harary graph also joins p to p+m/2, and
// those chords let a coordinator cut the survivors into pieces whose members
// still keep Threshold surviving neighbours each.
//
// The permutation is seeded with a hash of the signed key adverts of the
// round. Honest clients' keys are fresh and unpredictable, so the server
// cannot compute the graph before it has committed to the adverts it
// forwards; its lever is to omit adverts (or have colluding clients
// advertise again) and try other graphs, which Recommend budgets for
// (2^40 graphs; package documentation, "Security").
type graph struct {
	order    []uint32       // position → client id
	pos      map[uint32]int // client id → position
	half     int            // k/2 neighbours on each side
	complete bool
}

func newGraph(ids []uint32, k int, digest [32]byte) *graph {
	m := len(ids)
	g := &graph{pos: make(map[uint32]int, m)}
	g.order = slices.Clone(ids)
	if k >= m-1 {
		g.complete = true
	} else {
		if k%2 != 0 {
			panic("secagg: internal error: odd degree on a sparse graph")
		}
		g.half = k / 2
		h := sha256.New()
		h.Write([]byte("fl-secure/secagg/v1 graph"))
		h.Write(digest[:])
		var seed [prg.KeySize]byte
		copy(seed[:], h.Sum(nil))
		r := prg.NewReader(&seed)
		for i := m - 1; i > 0; i-- { // Fisher–Yates
			j := int(r.Uint64n(uint64(i + 1)))
			g.order[i], g.order[j] = g.order[j], g.order[i]
		}
	}
	for p, id := range g.order {
		g.pos[id] = p
	}
	return g
}

// contains reports whether id is a node of the graph.
func (g *graph) contains(id uint32) bool {
	_, ok := g.pos[id]
	return ok
}

// neighbours returns the sorted neighbours of id, which must be a node.
func (g *graph) neighbours(id uint32) []uint32 {
	m := len(g.order)
	if g.complete {
		out := make([]uint32, 0, m-1)
		for _, v := range g.order {
			if v != id {
				out = append(out, v)
			}
		}
		slices.Sort(out)
		return out
	}
	p := g.pos[id]
	out := make([]uint32, 0, 2*g.half+1)
	for j := 1; j <= g.half; j++ {
		out = append(out, g.order[(p+j)%m], g.order[(p-j+m)%m])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// adjacent reports whether a and b, both nodes, are neighbours.
func (g *graph) adjacent(a, b uint32) bool {
	if a == b {
		return false
	}
	if g.complete {
		return true
	}
	m := len(g.order)
	d := (g.pos[a] - g.pos[b] + m) % m
	d = min(d, m-d)
	return d <= g.half
}

// connected reports whether the subgraph induced on ids, which must be
// distinct nodes, is connected. If it is not, it returns a node of the
// part that holds ids[0] and a node outside it.
func (g *graph) connected(ids []uint32) (ok bool, in, out uint32) {
	if g.complete || len(ids) < 2 {
		return true, 0, 0
	}
	m := len(g.order)
	member := make([]bool, m) // by position
	for _, id := range ids {
		member[g.pos[id]] = true
	}
	seen := make([]bool, m)
	stack := []int{g.pos[ids[0]]}
	seen[stack[0]] = true
	reached := 1
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for j := -g.half; j <= g.half; j++ {
			q := ((p+j)%m + m) % m
			if member[q] && !seen[q] {
				seen[q] = true
				reached++
				stack = append(stack, q)
			}
		}
	}
	if reached == len(ids) {
		return true, 0, 0
	}
	for _, id := range ids {
		if !seen[g.pos[id]] {
			return false, ids[0], id
		}
	}
	panic("secagg: internal error: connectivity count")
}
