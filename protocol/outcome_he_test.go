package protocol

import (
	"path/filepath"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
)

// TestHEStatisticsMarkedOpened: in an he-mode DP run the statistics release (round 0) is
// decrypted and used by the coordinator (its own ledger marks it opened
// or at least uses it to standardize), yet every site's ledger marks its
// statistics charge "unopened": the coordinator sends no RoundEnd for the
// statistics session, and in he mode a site takes only RoundEnd "ok" as
// the sign that a round opened. The site's ledger, the record a privacy
// officer reads, says a released statistic was never opened.
func TestHEStatisticsMarkedOpened(t *testing.T) {
	b := newWitnessBed(t, 3, HE)
	sum, err := b.run(1, nil)
	if err != nil || okRounds(sum) != 1 {
		t.Fatalf("run: %v", err)
	}
	if sum.StatisticsEpsilon == 0 {
		t.Fatal("no statistics release")
	}
	for i := 1; i <= b.n; i++ {
		path := filepath.Join(b.f.siteConfig(i).State, "site-ledger.jsonl")
		es, err := dp.ReadLedger(path)
		if err != nil {
			t.Fatal(err)
		}
		oc := outcomes(t, path)
		for _, e := range es {
			if e.Kind == "charge" && e.Round == 0 && oc[e.Seq] == dp.Unopened {
				t.Errorf("site %d: the statistics release, opened and used (statistics: %s), is marked %q in the site's ledger", i, sum.Statistics, oc[e.Seq])
			}
		}
	}
	for seq, o := range outcomes(t, b.ledger()) {
		t.Logf("coordinator ledger: charge %d outcome %q", seq, o)
	}
}
