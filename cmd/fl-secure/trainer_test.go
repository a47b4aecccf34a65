package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol"
)

// request is a client-level round of a logistic model over 3 features.
func request(t *testing.T, level dp.Level) protocol.TrainRequest {
	t.Helper()
	l, err := fl.NewLayout("logistic", 3, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	q := protocol.TrainRequest{Round: 2, Level: level, Clip: 1, Layout: l, Model: []float64{0.1, 0.2, 0.3, -0.5},
		Mean: []float64{1, 2, 3}, Scale: []float64{1, 1, 2}}
	if level == dp.RecordLevel {
		q.Records = 7
	}
	return q
}

func shellTrainer(t *testing.T, script string) (*commandTrainer, *bytes.Buffer) {
	var log bytes.Buffer
	return &commandTrainer{ctx: context.Background(), command: script, timeout: time.Minute, out: &log}, &log
}

// TestTrainerCommandContract runs a shell trainer that checks what it is
// given: the files, their private directory, an environment without the
// passphrase; it returns the global model as its update.
func TestTrainerCommandContract(t *testing.T) {
	t.Setenv("FL_SECURE_PASSPHRASE", "correct horse battery staple")
	t.Setenv("FL_SECURE_OTHER", "x")
	seen := filepath.Join(t.TempDir(), "seen")
	script := `set -e
test -z "$FL_SECURE_PASSPHRASE" || { echo "passphrase leaked"; exit 9; }
test -z "$FL_SECURE_OTHER" || exit 9
test "$(stat -c %a "$FL_SECURE_WORKDIR")" = 700 || { echo "workdir not private"; exit 8; }
test "$(dirname "$FL_SECURE_MODEL")" = "$FL_SECURE_WORKDIR"
test "$FL_SECURE_ROUND" = 2 && test "$FL_SECURE_LEVEL" = client && test "$FL_SECURE_CLIP" = 1 && test -z "$FL_SECURE_RECORDS"
echo "$FL_SECURE_WORKDIR" > ` + seen + `
cp "$FL_SECURE_LAYOUT" ` + seen + `.json
cp "$FL_SECURE_MODEL" "$FL_SECURE_UPDATE"
echo trained; echo warning >&2`
	tr, log := shellTrainer(t, script)
	q := request(t, dp.ClientLevel)
	res, err := tr.train(q)
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	for i, v := range q.Model {
		if res.Update[i] != v {
			t.Fatalf("update %v, want the model %v", res.Update, q.Model)
		}
	}
	if !strings.Contains(log.String(), "trainer (round 2): trained\n") || !strings.Contains(log.String(), "trainer (round 2): warning\n") {
		t.Errorf("the trainer's output is not in the log:\n%s", log.String())
	}
	dir, _ := os.ReadFile(seen)
	if _, err := os.Stat(strings.TrimSpace(string(dir))); !os.IsNotExist(err) {
		t.Errorf("the trainer's directory %s was not removed: %v", dir, err)
	}
	f, err := os.Open(seen + ".json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	man, err := fl.ReadManifest(f)
	if err != nil {
		t.Fatal(err)
	}
	if man.Round != 2 || man.Level != "client" || man.Scale[2] != 2 || man.Model != "logistic" || man.LabelScale != nil {
		t.Errorf("manifest %+v", man)
	}
}

func TestTrainerCommandFailures(t *testing.T) {
	write := func(names map[string][]int, meta string) string {
		// A shell trainer writing a safetensors file with these tensors
		// (zeros) via a tiny Go-made template is overkill; write it here
		// and copy it in.
		ts := map[string]fl.Tensor{}
		for n, shape := range names {
			c := 1
			for _, s := range shape {
				c *= s
			}
			ts[n] = fl.Tensor{DType: "F32", Shape: shape, Data: make([]float64, c)}
		}
		var md map[string]string
		if meta != "" {
			md = map[string]string{"records": meta}
		}
		var buf bytes.Buffer
		if err := fl.WriteSafetensors(&buf, ts, md); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "u.safetensors")
		os.WriteFile(p, buf.Bytes(), 0o600)
		return `cp ` + p + ` "$FL_SECURE_UPDATE"`
	}
	good := map[string][]int{"weight": {1, 3}, "bias": {1}}
	for _, tc := range []struct {
		name, script string
		level        dp.Level
		timeout      time.Duration
		want         string
	}{
		{"exit status", "echo oops; exit 3", dp.ClientLevel, 0, "exited with status 3"},
		{"no update", "true", dp.ClientLevel, 0, "no update at"},
		{"timeout", "sleep 60 & wait", dp.ClientLevel, 300 * time.Millisecond, "ran past --train-timeout"},
		{"wrong name", write(map[string][]int{"weights": {1, 3}, "bias": {1}}, ""), dp.ClientLevel, 0, `tensor "weights" is not in the logistic layout`},
		{"wrong shape", write(map[string][]int{"weight": {3}, "bias": {1}}, ""), dp.ClientLevel, 0, `tensor "weight" has shape [3]; the layout's is [1 3]`},
		{"missing tensor", write(map[string][]int{"weight": {1, 3}}, ""), dp.ClientLevel, 0, `tensor "bias" of the logistic layout is missing`},
		{"no records", write(good, ""), dp.RecordLevel, 0, `no "records" metadata`},
		{"bad records", write(good, "seven"), dp.RecordLevel, 0, `"records" metadata "seven" is not an integer`},
		{"symlink", `ln -s /etc/passwd "$FL_SECURE_UPDATE"`, dp.ClientLevel, 0, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, log := shellTrainer(t, tc.script)
			if tc.timeout > 0 {
				tr.timeout = tc.timeout
			}
			_, err := tr.train(request(t, tc.level))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want %q\nlog:\n%s", err, tc.want, log.String())
			}
		})
	}
	// At record level the records the file names come back for the site
	// to check.
	tr, _ := shellTrainer(t, write(good, "7"))
	res, err := tr.train(request(t, dp.RecordLevel))
	if err != nil || res.Records != 7 {
		t.Fatalf("record level: %+v, %v", res, err)
	}
}

func TestTrainerEnv(t *testing.T) {
	env := trainerEnv([]string{"PATH=/bin", "FL_SECURE_PASSPHRASE=secret", "fl_secure_passphrase=secret", "HOME=/h"}, map[string]string{envRound: "3"})
	got := strings.Join(env, " ")
	if strings.Contains(got, "secret") || !strings.Contains(got, "PATH=/bin") || !strings.Contains(got, "FL_SECURE_ROUND=3") {
		t.Errorf("trainer environment %q", got)
	}
}

// TestReadUpdateFormats reads the forms --update accepts: the layout's
// named tensors, one flat tensor, a flat .npy vector; and refuses the
// wrong length with the layout named.
func TestReadUpdateFormats(t *testing.T) {
	l, _ := fl.NewLayout("logistic", 2, 1, 0)
	dir := t.TempDir()
	save := func(name string, write func(*bytes.Buffer) error) string {
		var buf bytes.Buffer
		if err := write(&buf); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, buf.Bytes(), 0o600)
		return p
	}
	named := save("named.safetensors", func(b *bytes.Buffer) error {
		return fl.WriteSafetensors(b, map[string]fl.Tensor{"weight": {DType: "F32", Shape: []int{1, 2}, Data: []float64{1, 2}}, "bias": {DType: "F64", Shape: []int{1}, Data: []float64{3}}}, nil)
	})
	flat := save("flat.safetensors", func(b *bytes.Buffer) error {
		return fl.WriteSafetensors(b, map[string]fl.Tensor{"update": {DType: "F64", Shape: []int{3}, Data: []float64{1, 2, 3}}}, nil)
	})
	npy := save("u.npy", func(b *bytes.Buffer) error { return fl.WriteNPY(b, []float64{1, 2, 3}, true) })
	short := save("short.npy", func(b *bytes.Buffer) error { return fl.WriteNPY(b, []float64{1, 2}, false) })
	for _, p := range []string{named, flat, npy} {
		v, _, err := readUpdate(p, l)
		if err != nil || len(v) != 3 || v[0] != 1 || v[2] != 3 {
			t.Errorf("%s: %v, %v", filepath.Base(p), v, err)
		}
	}
	if _, _, err := readUpdate(short, l); err == nil || !strings.Contains(err.Error(), "holds 2 values; the round's logistic model has 3 (weight [1 2], bias [1])") {
		t.Errorf("short update: %v", err)
	}
}

// TestLoadDataTask loads labels for each model and refuses a 3-class
// label under logistic with the fix named.
func TestLoadDataTask(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.csv")
	os.WriteFile(p, []byte("a,b,y\n1,2,0\n2,3,1\n3,4,2\n4,5,1\n"), 0o600)
	if _, err := loadData(p, "y", "logistic"); err == nil || !strings.Contains(err.Error(), "use --model softmax here and --model softmax --classes 3 on the coordinator") {
		t.Errorf("logistic on 3 classes: %v", err)
	}
	if _, err := loadData(p, "y", ""); err == nil || !strings.Contains(err.Error(), "--model softmax") {
		t.Errorf("default model on 3 classes: %v", err)
	}
	for model, task := range map[string]fl.Task{"softmax": fl.Multiclass, "linear": fl.Regression, "mlp": fl.Multiclass} {
		d, err := loadData(p, "y", model)
		if err != nil || d.Task != task {
			t.Errorf("--model %s: %v, %v", model, d, err)
		}
	}
	if _, err := loadData(p, "y", "tree"); err == nil || !strings.Contains(err.Error(), `--model "tree"`) {
		t.Errorf("unknown model: %v", err)
	}
	os.WriteFile(p, []byte("a,y\n1,0\n2,1\n"), 0o600)
	if d, err := loadData(p, "y", "mlp"); err != nil || d.Task != fl.Binary {
		t.Errorf("mlp on binary labels: %v, %v", d, err)
	}
}

// TestClientSourcePrecedence checks that a source of the update on the
// command line replaces the kit's data instead of clashing with it.
func TestClientSourcePrecedence(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if code := provisionCmd([]string{"--sites", "3", "--out", dir, "--demo-data", "wdbc"}, &out, &out); code != 0 {
		t.Fatalf("provision: %s", out.String())
	}
	conf := filepath.Join(dir, "site-1", "client.conf")
	for _, tc := range []struct {
		args []string
		want string
	}{
		// Without the fix: "give exactly one of --data and --update".
		{[]string{"--update", filepath.Join(dir, "missing.npy")}, "--update: stat"},
		{[]string{"--train-cmd", "true", "--update", "u.npy"}, "two sources of the update"},
		{[]string{"--train-timeout", "0s"}, "--train-timeout 0s"},
		{[]string{"--records", "5"}, "--records 5"},
		{[]string{"--model", "tree"}, `--model "tree"`},
	} {
		var stderr bytes.Buffer
		code := clientCmd(append([]string{"--config", conf}, tc.args...), &out, &stderr)
		if code == 0 || !strings.Contains(stderr.String(), tc.want) || strings.Contains(stderr.String(), "exactly one") {
			t.Errorf("client %v: exit %d, %s; want %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

// TestDemoKits checks that each embedded data set's kit names its label,
// model, features and ranges.
func TestDemoKits(t *testing.T) {
	for _, tc := range []struct {
		name         string
		client, coor []string
	}{
		{"wdbc", []string{"label = malignant", "model = logistic"}, []string{"model = logistic", "features = 30", "feature_ranges = wdbc"}},
		{"diabetes", []string{"label = progression", "model = linear"}, []string{"model = linear", "features = 10", "feature_ranges = diabetes"}},
	} {
		dir := t.TempDir()
		var out bytes.Buffer
		if code := provisionCmd([]string{"--sites", "3", "--out", dir, "--demo-data", tc.name}, &out, &out); code != 0 {
			t.Fatalf("provision: %s", out.String())
		}
		c, _ := os.ReadFile(filepath.Join(dir, "site-2", "client.conf"))
		k, _ := os.ReadFile(filepath.Join(dir, "coordinator", "coordinator.conf"))
		for _, w := range tc.client {
			if !strings.Contains(string(c), "\n"+w+"\n") {
				t.Errorf("%s: client.conf lacks %q:\n%s", tc.name, w, c)
			}
		}
		for _, w := range tc.coor {
			if !strings.Contains(string(k), "\n"+w+"\n") {
				t.Errorf("%s: coordinator.conf lacks %q", tc.name, w)
			}
		}
		if strings.Count(string(c), "\nlabel =") != 1 || strings.Count(string(k), "\nmodel =") != 1 {
			t.Errorf("%s: a key set twice", tc.name)
		}
	}
}

// buildTrainer builds the dependency-free trainer of testdata/gotrainer.
func buildTrainer(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a trainer")
	}
	bin := filepath.Join(t.TempDir(), "gotrainer")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/gotrainer").CombinedOutput(); err != nil {
		t.Fatalf("building the trainer: %v\n%s", err, out)
	}
	return bin
}

// TestTrainerMatchesFl runs the Go trainer at record level and checks
// its sum against fl.ClippedGradientSum on the same standardized data.
func TestTrainerMatchesFl(t *testing.T) {
	bin := buildTrainer(t)
	compareTrainer(t, bin)
}

// compareTrainer runs trainer (a command taking --data and --label) on a
// softmax round at record and client level and checks the record-level
// sum against fl's.
func compareTrainer(t *testing.T, trainer string) {
	dir := t.TempDir()
	data := filepath.Join(dir, "d.csv")
	os.WriteFile(data, []byte("a,b,y\n1,2,0\n2,-3,1\n3,4,2\n-4,5,1\n0.5,0,2\n"), 0o600)
	l, _ := fl.NewLayout("softmax", 2, 3, 0)
	model := []float64{0.1, -0.2, 0.3, 0.4, 0.5, -0.6, 0.7, 0.8, -0.9}
	q := protocol.TrainRequest{Round: 1, Level: dp.RecordLevel, Clip: 0.5, Layout: l, Model: model,
		Mean: []float64{1, 1}, Scale: []float64{2, 3}, Records: 5}
	tr, log := shellTrainer(t, trainer+" --data "+data+" --label y")
	res, err := tr.train(q)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	d, _ := fl.LoadCSV(data, "y", fl.Multiclass)
	d = (&fl.Standardizer{Mean: q.Mean, Scale: q.Scale}).Apply(d)
	m, _ := fl.NewModel("softmax", fl.Multiclass, 2, 3, 0)
	want, _, _ := fl.ClippedGradientSum(m, model, d, 1, q.Clip, nil)
	if res.Records != 5 {
		t.Errorf("records %d", res.Records)
	}
	for i := range want {
		if d := res.Update[i] - want[i]; d > 1e-9 || d < -1e-9 {
			t.Fatalf("the trainer's sum %v, fl's %v", res.Update, want)
		}
	}
	q.Level, q.Records = dp.ClientLevel, 0
	if res, err = tr.train(q); err != nil || len(res.Update) != 9 {
		t.Fatalf("client level: %v, %v\n%s", res, err, log.String())
	}
	if b, _ := json.Marshal(q.Manifest()); !strings.Contains(string(b), `"name":"weight","shape":[3,2]`) {
		t.Errorf("manifest %s", b)
	}
}

// TestNumpyTrainer runs docs/examples/trainer_numpy.py, when a python3
// with numpy is at hand, against the same checks as the Go trainer.
func TestNumpyTrainer(t *testing.T) {
	py := numpyPython()
	if py == "" {
		t.Skip("no python3 with numpy found (tried python3 and /usr/bin/python3); the numpy trainer example is not run")
	}
	script, _ := filepath.Abs("../../docs/examples/trainer_numpy.py")
	compareTrainer(t, py+" -B "+script)
}

// numpyPython returns a python3 that imports numpy, or "".
func numpyPython() string {
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import numpy").Run() == nil {
			return py
		}
	}
	return ""
}

// TestEvaluateClasses evaluates a 3-class checkpoint on a test set that
// holds only classes 0 and 1 when told the federation's classes.
func TestEvaluateClasses(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.MkdirAll(filepath.Join(state, "checkpoints"), 0o700)
	var buf bytes.Buffer
	fl.WriteSafetensors(&buf, map[string]fl.Tensor{"model": {DType: "F64", Shape: []int{6}, Data: []float64{1, 0, -1, 0, 0, 0}}}, nil)
	os.WriteFile(filepath.Join(state, "checkpoints", "round-0001.safetensors"), buf.Bytes(), 0o600)
	os.WriteFile(filepath.Join(state, "statistics.json"), []byte(`{"mean":[0],"scale":[1],"rows":4}`), 0o600)
	data := filepath.Join(dir, "t.csv")
	os.WriteFile(data, []byte("a,y\n1,0\n-1,1\n2,0\n"), 0o600)
	var out bytes.Buffer
	if code := evaluateCmd([]string{"--state", state, "--data", data, "--label", "y", "--model", "softmax"}, &out, &out); code == 0 {
		t.Errorf("2 test classes for a 3-class checkpoint evaluated: %s", out.String())
	}
	out.Reset()
	if code := evaluateCmd([]string{"--state", state, "--data", data, "--label", "y", "--model", "softmax", "--classes", "3"}, &out, &out); code != 0 || !strings.Contains(out.String(), "accuracy 1.000") {
		t.Errorf("evaluate --classes 3: %s", out.String())
	}
}
