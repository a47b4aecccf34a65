package protocol

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// TestAttackStaleTrainTimeoutAfterFailedStart: secureSum sets phaseWait
// (TrainTimeout) right after sending the RoundStart, but in secagg mode
// the secagg parameters are validated and the server built only after
// that, before the first collect. With 5 sites, a minimum cohort of 3 and
// 2 colluders a cohort of 3 gives threshold 3 above degree 2: p.Validate
// fails and secureSum returned with phaseWait still set. (NewCoordinator
// now refuses a minimum cohort that small for 2 colluders; the round of 3
// is driven directly here.) The next collect, whatever it is (a witness at the run's end, a
// later phase), then waits TrainTimeout instead of PhaseTimeout for a
// silent site.
func TestAttackStaleTrainTimeoutAfterFailedStart(t *testing.T) {
	f := newMemFederation(t, 5, CoordinatorConfig{Rounds: 1, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
		Level: dp.RecordLevel, MinCohort: 4, Colluders: 2, PhaseTimeout: 200 * time.Millisecond, TrainTimeout: time.Hour})
	c := f.coord
	sess := []*session{silentSession(1), silentSession(2), silentSession(3)}
	start := silentTrainStart()
	_, _, _, err := c.secureSum(context.Background(), sess, start, nil)
	if err == nil {
		t.Fatal("the round of 3 with 2 colluders was expected to fail secagg's validation")
	}
	t.Logf("secureSum: %v", err)
	if d := time.Duration(c.phaseWait.Load()); d != 0 {
		t.Errorf("after the round failed before its first collect, phaseWait is still %v", d)
	}
	// The next collect (here: one silent site, as in witnessEnd) must give
	// up after PhaseTimeout (200ms), not TrainTimeout.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	c.collect(ctx, []*session{silentSession(4)}, func(*wire.SiteMessage) bool { return false })
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("the next collect (a silent site) waited %v (cut by the test's 5s context), not the 200ms phase timeout", took.Round(time.Millisecond))
	}
}

// TestColludersNeedCohort: a secagg coordinator whose minimum cohort k
// cannot hold a Shamir threshold above its colluders (c > k − 2) is
// refused at start: every round of k sites would fail after they paid.
func TestColludersNeedCohort(t *testing.T) {
	dir := t.TempDir()
	if err := Provision(dir, 5, nil); err != nil {
		t.Fatal(err)
	}
	roster, err := LoadRoster(dir + "/coordinator/roster.json")
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewCoordinator(CoordinatorConfig{Roster: roster, InMemory: true, Mode: SecAgg, Rounds: 1, Clip: 1, LearningRate: 1,
		Model: "logistic", Features: 30, MinCohort: 3, Colluders: 2, State: dir + "/state", Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "minimum cohort of at least 4") {
		t.Errorf("min cohort 3 with 2 colluders: %v", err)
	}
}

// silentSession is site's session in a coordinator driven directly: what
// is sent to it is dropped and it never answers.
func silentSession(site int) *session {
	return &session{site: site, inbox: make(chan *wire.SiteMessage, 8), send: func(*wire.CoordinatorMessage) error { return nil },
		done: make(chan struct{}), closed: make(chan struct{})}
}

// silentTrainStart is a record-level secagg training round of a 31-parameter
// logistic model, for a coordinator driven directly with silent sessions.
func silentTrainStart() *wire.RoundStart {
	return &wire.RoundStart{Round: 7 << 20, Kind: wire.RoundStart_TRAIN, Length: 31, Model: make([]float64, 31), Bits: 32,
		Clip: 1, Gamma: 1.0 / (1 << 20), SiteSigma: 3, ModelName: "logistic", Mode: string(SecAgg), Level: string(dp.RecordLevel)}
}
