package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/fl"
)

// netFederation runs the coordinator and one client per argument list
// in this process, over gRPC with mutual TLS on loopback, and returns the
// coordinator's output and each client's.
func netFederation(t *testing.T, dir string, coordArgs []string, clients [][]string) (string, []string) {
	t.Helper()
	addr := freePort(t)
	_, port, _ := strings.Cut(addr, ":")
	type result struct {
		i    int
		code int
		out  string
	}
	done := make(chan result, len(clients)+1)
	go func() {
		var out bytes.Buffer
		code := coordinatorCmd(append([]string{"--config", filepath.Join(dir, "coordinator", "coordinator.conf"),
			"--listen", addr, "--join-wait", "20s", "--phase-timeout", "20s"}, coordArgs...), &out, &out)
		done <- result{-1, code, out.String()}
	}()
	for i, args := range clients {
		go func() {
			var out bytes.Buffer
			code := clientCmd(append([]string{"--config", filepath.Join(dir, fmt.Sprintf("site-%d", i+1), "client.conf"),
				"--coordinator", "localhost:" + port}, args...), &out, &out)
			done <- result{i, code, out.String()}
		}()
	}
	outs := make([]string, len(clients))
	var coord string
	timeout := time.After(4 * time.Minute)
	for range len(clients) + 1 {
		select {
		case r := <-done:
			if r.i < 0 {
				coord = r.out
				if r.code != 0 {
					t.Fatalf("coordinator exited %d:\n%s", r.code, r.out)
				}
				continue
			}
			outs[r.i] = r.out
			if r.code != 0 {
				t.Errorf("client %d exited %d:\n%s", r.i+1, r.code, r.out)
			}
		case <-timeout:
			t.Fatalf("the federation did not finish; coordinator so far:\n%s", coord)
		}
	}
	return coord, outs
}

// writeClasses writes n rows of 3 classes around separated centres (only
// classes below top), seeded.
func writeClasses(t *testing.T, path string, n, top int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	centres := [][2]float64{{-2, 0}, {2, 0}, {0, 2.5}}
	var b strings.Builder
	b.WriteString("a,b,y\n")
	for i := range n {
		c := i % top
		fmt.Fprintf(&b, "%.4f,%.4f,%d\n", centres[c][0]+0.7*rng.NormFloat64(), centres[c][1]+0.7*rng.NormFloat64(), c)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSoftmaxFederationOverGRPC trains a 3-class softmax model over real
// gRPC at record level: two hospitals train on their CSV files with
// fl-secure, one brings its own trainer (testdata/gotrainer) and holds
// only two of the three classes.
func TestSoftmaxFederationOverGRPC(t *testing.T) {
	trainer := buildTrainer(t)
	dir := t.TempDir()
	var out bytes.Buffer
	if code := provisionCmd([]string{"--sites", "3", "--out", dir}, &out, &out); code != 0 {
		t.Fatalf("provision: %s", out.String())
	}
	data := func(i int) string { return filepath.Join(dir, fmt.Sprintf("site-%d", i), "local.csv") }
	writeClasses(t, data(1), 60, 3, 1)
	writeClasses(t, data(2), 60, 3, 2)
	writeClasses(t, data(3), 60, 2, 3)
	test := filepath.Join(dir, "test.csv")
	writeClasses(t, test, 90, 3, 4)
	ranges := filepath.Join(dir, "ranges.csv")
	os.WriteFile(ranges, []byte("a,-6,6\nb,-6,6\n"), 0o600)
	coord, outs := netFederation(t, dir,
		[]string{"--model", "softmax", "--classes", "3", "--features", "2", "--feature-ranges", ranges, "--rounds", "4"},
		[][]string{
			{"--data", data(1), "--label", "y", "--model", "softmax"},
			{"--data", data(2), "--label", "y", "--model", "softmax"},
			{"--train-cmd", trainer + " --data " + data(3) + " --label y", "--data", data(3), "--label", "y", "--model", "softmax"},
		})
	if !strings.Contains(coord, "4 rounds completed") {
		t.Fatalf("coordinator:\n%s", coord)
	}
	for i, o := range outs {
		if !strings.Contains(o, "took part in 4 rounds") {
			t.Errorf("client %d:\n%s", i+1, o)
		}
	}
	if !strings.Contains(outs[2], "trainer (round 4): round 4: record update over 60 records") {
		t.Errorf("the trainer's output is not in its hospital's log:\n%s", outs[2])
	}
	var ev bytes.Buffer
	if code := evaluateCmd([]string{"--state", filepath.Join(dir, "coordinator", "state"), "--data", test, "--label", "y", "--model", "softmax"}, &ev, &ev); code != 0 {
		t.Fatalf("evaluate: %s", ev.String())
	}
	m := regexp.MustCompile(`accuracy ([0-9.]+)`).FindStringSubmatch(ev.String())
	if m == nil {
		t.Fatalf("evaluate: %s", ev.String())
	}
	// Chance is 1/3; the classes are well separated.
	if acc, _ := strconv.ParseFloat(m[1], 64); acc < 0.6 {
		t.Errorf("3-class accuracy %v: %s", acc, ev.String())
	}
	t.Log(strings.TrimSpace(ev.String()))
}

// TestLinearFederationOverGRPC trains linear regression on the diabetes
// demo kits over real gRPC at client level, one hospital with its own
// trainer, and checks the model it writes with its layout and
// standardization.
func TestLinearFederationOverGRPC(t *testing.T) {
	trainer := buildTrainer(t)
	dir := t.TempDir()
	var out bytes.Buffer
	if code := provisionCmd([]string{"--sites", "3", "--out", dir, "--demo-data", "diabetes"}, &out, &out); code != 0 {
		t.Fatalf("provision: %s", out.String())
	}
	local := filepath.Join(dir, "site-1", "local.csv")
	modelOut := filepath.Join(dir, "site-1", "global.safetensors")
	// Site 2 sends one update trained elsewhere, as named tensors, though
	// its kit's client.conf sets data: the flag replaces the kit's choice.
	var u bytes.Buffer
	fl.WriteSafetensors(&u, map[string]fl.Tensor{"weight": {DType: "F32", Shape: []int{1, 10}, Data: make([]float64, 10)},
		"bias": {DType: "F32", Shape: []int{1}, Data: []float64{0.01}}}, nil)
	update := filepath.Join(dir, "site-2", "update.safetensors")
	os.WriteFile(update, u.Bytes(), 0o600)
	coord, outs := netFederation(t, dir, []string{"--rounds", "3", "--level", "client"}, [][]string{
		// On the command line, --train-cmd replaces the kit's data;
		// --data brings it back for the statistics.
		{"--train-cmd", trainer + " --data " + local + " --label progression", "--data", local, "--model-out", modelOut},
		{"--update", update},
		nil,
	})
	if !strings.Contains(outs[1], "took part in 3 rounds") {
		t.Errorf("the hospital sending --update:\n%s", outs[1])
	}
	if !strings.Contains(coord, "3 rounds completed") {
		t.Fatalf("coordinator:\n%s", coord)
	}
	f, err := os.Open(modelOut)
	if err != nil {
		t.Fatal(err)
	}
	ts, meta, err := fl.ReadSafetensors(f)
	f.Close()
	if err != nil || len(ts["weight"].Data) != 10 || len(ts["bias"].Data) != 1 || meta["round"] != "3" {
		t.Fatalf("global model: %v, %v, %v", ts, meta, err)
	}
	g, err := os.Open(modelOut + ".layout.json")
	if err != nil {
		t.Fatal(err)
	}
	man, err := fl.ReadManifest(g)
	g.Close()
	if err != nil || man.Model != "linear" || man.LabelScale == nil || len(man.Mean) != 10 {
		t.Fatalf("manifest %+v, %v", man, err)
	}
	var ev bytes.Buffer
	if code := evaluateCmd([]string{"--state", filepath.Join(dir, "coordinator", "state"), "--data", filepath.Join(dir, "coordinator", "test.csv"),
		"--label", "progression", "--model", "linear"}, &ev, &ev); code != 0 || !strings.Contains(ev.String(), "RMSE") {
		t.Fatalf("evaluate: %s", ev.String())
	}
	t.Log(strings.TrimSpace(ev.String()))
}
