package local

import (
	"context"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/protocol"
)

func defaultConfig(t *testing.T) Config {
	return Config{
		Data: Data{Name: "wdbc", Sites: 5, Alpha: 0.5, TestFraction: 0.25},
		Federation: Federation{Mode: protocol.SecAgg, Level: dp.RecordLevel, Epsilon: 3, Delta: 1e-5, Rounds: 30,
			Clip: 1, Dir: t.TempDir()},
		Compare: true,
	}
}

func TestSimulateDefault(t *testing.T) {
	t0 := time.Now()
	res, err := Simulate(context.Background(), defaultConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v", time.Since(t0))
	for _, r := range res.Table {
		t.Logf("%-40s %.3f %.3f", r.Setting, r.Test.Accuracy, r.Test.AUC)
	}
	t.Logf("setup %.3f s, run %.3f s, ε %.3f", res.Federated.SetupSeconds, res.Federated.Seconds, res.Federated.Epsilon)
}
