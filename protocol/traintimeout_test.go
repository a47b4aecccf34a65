package protocol

import (
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
)

// A hospital whose trainer takes longer than a phase still joins a
// training round when the coordinator's TrainTimeout covers it; without
// it, the same hospital is a dropout of the round's first phase. The
// durations are far apart (a 5 s trainer against a 1.5 s phase and a 2 min
// train timeout), so load cannot flip the outcome.
func TestTrainTimeoutCoversSlowTrainer(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a slow trainer")
	}
	for _, tc := range []struct {
		train time.Duration
		want  int // sites in the opened round
	}{{2 * time.Minute, 4}, {0, 3}} {
		f := newMemFederation(t, 4, CoordinatorConfig{Rounds: 1, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1, Level: dp.ClientLevel,
			MinCohort: 3, PhaseTimeout: 1500 * time.Millisecond, TrainTimeout: tc.train, JoinWait: 10 * time.Second})
		sum, err, _ := runMem(t, f, 4, func(c *SiteConfig) {
			c.Level = dp.ClientLevel
			if c.Site == 1 {
				c.Trainer = func(q TrainRequest) (TrainResult, error) {
					time.Sleep(5 * time.Second)
					return TrainResult{Update: make([]float64, len(q.Model))}, nil
				}
			}
		})
		if err != nil {
			t.Fatalf("train timeout %v: %v", tc.train, err)
		}
		if okRounds(sum) != 1 || sum.Rounds[len(sum.Rounds)-1].Participants != tc.want {
			t.Errorf("train timeout %v: rounds %+v; want one opened with %d sites", tc.train, sum.Rounds, tc.want)
		}
	}
}
