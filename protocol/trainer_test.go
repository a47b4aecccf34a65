package protocol

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// trainerRound is a logistic round over 3 features at level with clip 1.
func trainerRound(level dp.Level, trainer func(TrainRequest) (TrainResult, error), records int) (*siteRound, *bytes.Buffer) {
	var log bytes.Buffer
	s := &Site{cfg: SiteConfig{Trainer: trainer, Records: records, Hidden: 16}, log: slog.New(slog.NewTextHandler(&log, nil))}
	st := &wire.RoundStart{Round: 3 << 20, Kind: wire.RoundStart_TRAIN, Length: 4, Model: []float64{1, 2, 3, 4}, ModelName: "logistic",
		Mean: []float64{0, 0, 0}, Scale: []float64{1, 1, 1}, Clip: 1, Level: string(level)}
	return &siteRound{s: s, start: st}, &log
}

// TestSiteTrainerChecks checks what a site enforces on its trainer's
// update: it clips a client-level update itself, and refuses a
// record-level sum over other than the records it named or longer than
// records × clip, and NaN, all with a reason that tells the coordinator
// nothing but that the trainer failed.
func TestSiteTrainerChecks(t *testing.T) {
	var got TrainRequest
	long := func(q TrainRequest) (TrainResult, error) {
		got = q
		return TrainResult{Update: []float64{30, 0, 40, 0}, Records: q.Records}, nil
	}
	r, _ := trainerRound(dp.ClientLevel, long, 0)
	v, err := r.vector()
	if err != nil {
		t.Fatal(err)
	}
	if n := math.Hypot(math.Hypot(v[0], v[1]), math.Hypot(v[2], v[3])); n > 1 || math.Abs(v[0]/v[2]-0.75) > 1e-12 {
		t.Errorf("client-level update %v is not clipped to 1", v)
	}
	if got.Round != 3 || got.Layout.Model != "logistic" || got.Records != 0 || got.Level != dp.ClientLevel {
		t.Errorf("request %+v", got)
	}
	got.Model[0] = 99 // the trainer's copy
	if r.start.Model[0] != 1 {
		t.Error("the trainer changed the round's model")
	}

	// Record level: 50 records × clip 1 bound the sum's norm (50 here).
	r, _ = trainerRound(dp.RecordLevel, long, 50)
	if v, err := r.vector(); err != nil || v[2] != 40 {
		t.Errorf("record level within the bound: %v, %v", v, err)
	}
	if got.Records != 50 {
		t.Errorf("the trainer was told %d records, want 50", got.Records)
	}
	for _, tc := range []struct {
		name    string
		records int
		trainer func(TrainRequest) (TrainResult, error)
		log     string
	}{
		{"sum too long", 49, long, "above records × clip = 49"},
		{"other count", 50, func(q TrainRequest) (TrainResult, error) {
			return TrainResult{Update: make([]float64, 4), Records: 10}, nil
		}, "the trainer summed 10 records; it was told to use 50"},
		{"NaN", 50, func(q TrainRequest) (TrainResult, error) {
			return TrainResult{Update: []float64{0, math.NaN(), 0, 0}, Records: 50}, nil
		}, "value 1 is NaN"},
		{"length", 50, func(q TrainRequest) (TrainResult, error) {
			return TrainResult{Update: make([]float64, 3), Records: 50}, nil
		}, "the update has 3 values, the logistic model 4"},
		{"failure", 50, func(q TrainRequest) (TrainResult, error) {
			return TrainResult{}, errors.New("patient 12345 has a missing value")
		}, "patient 12345"},
	} {
		r, log := trainerRound(dp.RecordLevel, tc.trainer, tc.records)
		v, err := r.vector()
		if err != nil || len(v) != int(r.start.Length) || slices.ContainsFunc(v, func(x float64) bool { return x != 0 }) {
			t.Errorf("%s: %v, %v; want a zero update and no error", tc.name, v, err)
		}
		if !strings.Contains(log.String(), tc.log) {
			t.Errorf("%s: the site's log lacks %q:\n%s", tc.name, tc.log, log.String())
		}
	}
	r, _ = trainerRound(dp.RecordLevel, long, 0)
	if _, err := r.vector(); err == nil || !strings.Contains(err.Error(), "record count") {
		t.Errorf("record level without a count: %v", err)
	}
}

// TestRoundLayout derives every model's layout from a round, and refuses
// a round that fits none.
func TestRoundLayout(t *testing.T) {
	for _, tc := range []struct {
		model           string
		length, mean    int
		outputs, hidden int
		task            fl.Task
		wantErr         string
	}{
		{"logistic", 31, 30, 1, 0, fl.Binary, ""},
		{"linear", 11, 11, 1, 0, fl.Regression, ""},
		{"softmax", 12, 3, 3, 0, fl.Multiclass, ""},
		{"mlp", 4*3 + 4 + 3*4 + 3, 3, 3, 4, fl.Multiclass, ""},
		{"mlp", 4*3 + 4 + 4 + 1, 3, 1, 4, fl.Binary, ""},
		{"softmax", 13, 3, 0, 0, 0, "does not fit 3 standardized features"},
		{"mlp", 30, 3, 0, 4, 0, "hidden width 4"},
		{"forest", 4, 3, 0, 0, 0, "unknown model"},
	} {
		st := &wire.RoundStart{ModelName: tc.model, Length: uint32(tc.length), Mean: make([]float64, tc.mean)}
		l, task, err := roundLayout(st, tc.hidden)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s/%d: %v; want %q", tc.model, tc.length, err, tc.wantErr)
			}
			continue
		}
		if err != nil || l.Outputs != tc.outputs || task != tc.task || l.Len() != tc.length {
			t.Errorf("%s/%d: %+v, %v, %v", tc.model, tc.length, l, task, err)
		}
	}
}

// TestDataModelClassesFromRound: a site that holds only classes 0 and 1
// trains the round's 3-class model, and a regression round refuses class
// labels.
func TestDataModelClassesFromRound(t *testing.T) {
	d := &fl.Dataset{Features: []string{"a", "b"}, X: [][]float64{{1, 2}, {3, 4}}, Y: []float64{0, 1}, Task: fl.Multiclass, Classes: 2}
	s := &Site{cfg: SiteConfig{Data: d, Hidden: 16}}
	r := &siteRound{s: s, start: &wire.RoundStart{ModelName: "softmax", Length: 9, Mean: []float64{0, 0}}}
	m, err := r.dataModel()
	if err != nil || m.NumParams() != 9 {
		t.Fatalf("softmax over 3 classes: %v", err)
	}
	r.start = &wire.RoundStart{ModelName: "linear", Length: 3, Mean: []float64{0, 0}}
	if _, err := r.dataModel(); err == nil || !strings.Contains(err.Error(), "client --model linear") {
		t.Errorf("linear round on class labels: %v", err)
	}
	// A label beyond the round's classes is not refused (the largest label
	// is the site's data): its records are left out, and only the site's
	// log says so.
	d.X, d.Y, d.Classes = append(d.X, []float64{5, 6}), append(d.Y, 3), 4
	r.start = &wire.RoundStart{ModelName: "softmax", Length: 9, Mean: []float64{0, 0}}
	if _, err := r.dataModel(); err != nil {
		t.Errorf("4 local classes in a 3-class round: %v", err)
	}
	var log bytes.Buffer
	s.log = slog.New(slog.NewTextHandler(&log, nil))
	if kept := r.withinClasses(d, 3); kept.Rows() != 2 || !strings.Contains(log.String(), "left_out=1") {
		t.Errorf("kept %d rows; log %q", kept.Rows(), log.String())
	}
}

// TestWriteModelLayout writes --model-out with the layout's named tensors
// and, beside it, the manifest with the standardization.
func TestWriteModelLayout(t *testing.T) {
	dir := t.TempDir()
	st := &wire.RoundStart{ModelName: "linear", Length: 3, Mean: []float64{1, 2, 10}, Scale: []float64{3, 4, 5}}
	p := filepath.Join(dir, "global.safetensors")
	if err := writeModel(p, []float64{0.5, 0.25, 7}, 4, st, 16); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(p)
	ts, meta, err := fl.ReadSafetensors(f)
	f.Close()
	if err != nil || ts["bias"].Data[0] != 7 || ts["weight"].Shape[1] != 2 || meta["round"] != "4" {
		t.Fatalf("model file: %v %v %v", ts, meta, err)
	}
	g, _ := os.Open(p + ".layout.json")
	man, err := fl.ReadManifest(g)
	g.Close()
	if err != nil || man.Round != 4 || man.Mean[1] != 2 || *man.LabelMean != 10 || *man.LabelScale != 5 {
		t.Fatalf("manifest %+v, %v", man, err)
	}
	// A model whose round is unknown is still written, flat.
	if err := writeModel(filepath.Join(dir, "other.safetensors"), []float64{1, 2}, 1, nil, 16); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.safetensors.layout.json")); !os.IsNotExist(err) {
		t.Errorf("a manifest for an unknown layout: %v", err)
	}
}
