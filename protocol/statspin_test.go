package protocol

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestStatisticsSigningSurvivesRestart: the statistics survivor set the
// sites were asked to sign is on disk before they are asked, so that a
// coordinator started again asks for exactly it (each site signs one
// statistics set, ever); a corrupt or implausible file is refused by name.
func TestStatisticsSigningSurvivesRestart(t *testing.T) {
	f := newMemFederation(t, 5, CoordinatorConfig{Rounds: 1, Clip: 1, LearningRate: 1, MinCohort: 3})
	c := f.coord
	if err := os.MkdirAll(c.cfg.State, 0o700); err != nil {
		t.Fatal(err)
	}
	if got, err := c.loadStatisticsSigning(); err != nil || got != nil {
		t.Fatalf("no file: %v, %v", got, err)
	}
	if err := c.saveStatisticsSigning([]int{1, 2, 4, 5}); err != nil {
		t.Fatal(err)
	}
	got, err := c.loadStatisticsSigning()
	if err != nil || !slices.Equal(got, []int{1, 2, 4, 5}) {
		t.Fatalf("loaded %v, %v", got, err)
	}
	path := filepath.Join(c.cfg.State, statisticsSigning)
	for _, bad := range []struct{ body, want string }{
		{`{"survivors": [1, 2`, "corrupt"},
		{`{"survivors": [1, 2]}`, "fewer than the minimum cohort"},
		{`{"survivors": [1, 2, 9]}`, "not on the roster"},
	} {
		if err := os.WriteFile(path, []byte(bad.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := c.loadStatisticsSigning(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want an error naming %q", bad.body, err, bad.want)
		}
	}
}
