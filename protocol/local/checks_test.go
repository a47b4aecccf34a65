package local

import (
	"errors"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/protocol"
)

// TestMaxDropout: the largest dropout at which a round still finds its
// cohort online at least half the time, and Federate refusing more.
func TestMaxDropout(t *testing.T) {
	for _, c := range []struct {
		n, k int
		want float64
	}{
		{5, 3, 0.5},   // P(≥3 of 5 online at ½) = ½ exactly
		{3, 3, 0.2},   // 0.8³ = 0.512; 0.79³ = 0.493
		{10, 6, 0.45}, // P(≥6 of 10 online at 0.55) = 0.504; at 0.54, 0.478
		{4, 5, 0},
	} {
		if got := MaxDropout(c.n, c.k); got != c.want {
			t.Errorf("MaxDropout(%d, %d) = %v, want %v", c.n, c.k, got, c.want)
		}
	}
	f := Federation{Rounds: 2, Clip: 1, LearningRate: 1, Dropout: 0.9}
	if err := f.defaults(5); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "at most 0.50") {
		t.Errorf("dropout 0.9: %v", err)
	}
}

// TestDropoutWarning: when redraws for a cohort make the sites offline
// less often than asked, the simulation says so.
func TestDropoutWarning(t *testing.T) {
	if w := dropoutWarning(Federation{Dropout: 0.5, Rounds: 40}, 5); !strings.Contains(w, "not 50%") {
		t.Errorf("dropout 0.5 of 5 sites: %q", w)
	}
	if w := dropoutWarning(Federation{Dropout: 0.05, Rounds: 40}, 10); w != "" {
		t.Errorf("dropout 0.05 of 10 sites: %q", w)
	}
}

// TestLoadTooManySites: the error counts the data set's rows as its file
// has them, and says how many are held out and how many sites fit.
func TestLoadTooManySites(t *testing.T) {
	_, err := Load(Data{Name: "wdbc", Sites: 100, TestFraction: 0.25})
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "the 569 rows of wdbc leave 427") || !strings.Contains(err.Error(), "at most 42 sites") {
		t.Errorf("100 sites: %v", err)
	}
	if _, err := Load(Data{Name: "wdbc", Sites: 42, TestFraction: 0.25}); err != nil {
		t.Errorf("42 sites: %v", err)
	}
}

// TestSkipped lists the attempts that opened nothing.
func TestSkipped(t *testing.T) {
	sum := &protocol.Summary{Rounds: []protocol.RoundResult{
		{Round: 1, Status: "ok"}, {Round: 2, Status: "below-cohort", Participants: 2}, {Round: 2, Status: "ok"}, {Round: 3, Status: "budget-refused"},
	}}
	got := skipped(sum)
	if len(got) != 2 || got[0].Round != 2 || got[0].Status != "below-cohort" || got[0].Participants != 2 || got[1].Status != "budget-refused" || got[0].Charged {
		t.Errorf("skipped %+v", got)
	}
}
