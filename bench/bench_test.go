package bench

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A small slice of the suite runs end to end: results carry baselines and
// ratios, the Markdown table and the files are written, and the scaling
// exponent is fitted.
func TestSuiteSmoke(t *testing.T) {
	rs, err := Run(Options{Quick: true, Filter: regexp.MustCompile(`^(secagg/secagg\+/n=(10|50)/|dp/accountants|he/)`)})
	if err != nil {
		t.Fatal(err)
	}
	rs = Finish(rs)
	seen := map[string]bool{}
	for _, r := range rs {
		seen[r.Scenario] = true
		if r.Value <= 0 || math.IsNaN(r.Value) {
			t.Errorf("%s/%s %s = %v", r.Scenario, r.Case, r.Metric, r.Value)
		}
		if r.Metric == "server time" && (r.Baseline <= 0 || r.Ratio <= 0) {
			t.Errorf("%s: no baseline", r.Case)
		}
	}
	for _, s := range []string{"secagg", "dp", "he"} {
		if !seen[s] {
			t.Errorf("no %s results", s)
		}
	}
	if a, k := Exponent(rs, "secagg", "secagg+/", "server time", "n"); k != 2 || math.IsNaN(a) {
		t.Errorf("exponent %v over %d points", a, k)
	}
	var md bytes.Buffer
	Markdown(&md, rs)
	if !strings.Contains(md.String(), "| secagg+/n=10/d=10000/dropout=0.1 | server time |") || !strings.Contains(md.String(), "∝ n^") {
		t.Errorf("markdown:\n%s", md.String())
	}
	dir := t.TempDir()
	if err := WriteFiles(dir, rs); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"results.csv", "results.json", "secagg-server-vs-n.png", "bytes-per-client.png"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestExponentFit(t *testing.T) {
	var rs []Result
	for _, n := range []float64{10, 100, 1000} {
		rs = append(rs, Result{Scenario: "secagg", Case: "secagg+/n=x/d=10000/dropout=0.1", Metric: "server time", Value: 3 * math.Pow(n, 1.25), Params: map[string]float64{"n": n}})
	}
	if a, _ := Exponent(rs, "secagg", "secagg+/", "server time", "n"); math.Abs(a-1.25) > 1e-9 {
		t.Errorf("fitted exponent %v, want 1.25", a)
	}
}
