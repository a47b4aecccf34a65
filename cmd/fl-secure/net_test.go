package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
)

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// federationKit builds the binary and provisions three sites with demo
// data, returning the binary, the kit directory and a free loopback
// address and its port.
func federationKit(t *testing.T) (bin, dir, addr, port string) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin = filepath.Join(t.TempDir(), "fl-secure")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir = t.TempDir()
	if out, err := exec.Command(bin, "provision", "--sites", "3", "--out", dir, "--demo-data", "wdbc").CombinedOutput(); err != nil {
		t.Fatalf("provision: %v\n%s", err, out)
	}
	addr = freePort(t)
	_, port, _ = strings.Cut(addr, ":")
	return bin, dir, addr, port
}

// TestFederationProcesses runs the built binary as a coordinator and three
// clients in separate processes, as the README walkthrough does, then
// audits every ledger and evaluates the model.
func TestFederationProcesses(t *testing.T) {
	bin, dir, addr, port := federationKit(t)
	coord := exec.Command(bin, "coordinator", "--config", filepath.Join(dir, "coordinator", "coordinator.conf"),
		"--listen", addr, "--rounds", "8", "--join-wait", "20s", "--phase-timeout", "20s")
	var cout, cerr bytes.Buffer
	coord.Stdout, coord.Stderr = &cout, &cerr
	if err := coord.Start(); err != nil {
		t.Fatal(err)
	}
	var clients []*exec.Cmd
	outs := make([]*bytes.Buffer, 3)
	for i := 1; i <= 3; i++ {
		c := exec.Command(bin, "client", "--config", filepath.Join(dir, fmt.Sprintf("site-%d", i), "client.conf"),
			"--coordinator", "localhost:"+port, "--model-out", filepath.Join(dir, fmt.Sprintf("site-%d", i), "global.npy"))
		outs[i-1] = new(bytes.Buffer)
		c.Stdout, c.Stderr = outs[i-1], outs[i-1]
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	done := make(chan error, 1)
	go func() { done <- coord.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("coordinator: %v\n%s%s", err, cout.String(), cerr.String())
		}
	case <-time.After(3 * time.Minute):
		coord.Process.Kill()
		t.Fatalf("coordinator did not finish:\n%s", cerr.String())
	}
	for i, c := range clients {
		if err := waitOrKill(c, 30*time.Second); err != nil {
			t.Errorf("client %d: %v\n%s", i+1, err, outs[i].String())
		}
		if !strings.Contains(outs[i].String(), "took part in 8 rounds") {
			t.Errorf("client %d output:\n%s", i+1, outs[i].String())
		}
	}
	if !strings.Contains(cout.String(), "8 rounds completed") {
		t.Fatalf("coordinator output:\n%s", cout.String())
	}
	// Audit the coordinator's ledger with the command it printed, and
	// every hospital's.
	line := cout.String()[strings.Index(cout.String(), "fl-secure budget audit"):]
	f := strings.Fields(strings.SplitN(line, "\n", 2)[0])
	audit := exec.Command(bin, f[1:]...)
	audit.Dir = "."
	if out, err := audit.CombinedOutput(); err != nil {
		t.Errorf("audit: %v\n%s", err, out)
	}
	// It names every hospital's cosigned checkpoint and key, each covering
	// the last round; and the checkpoints the hospitals hold themselves
	// audit too.
	if !strings.Contains(line, " --roster ") || !strings.Contains(line, " --coordinator") {
		t.Errorf("the coordinator's audit command takes no key from the roster:\n%s", cout.String())
	}
	if strings.Count(line, " --checkpoint ") < 3 || strings.Count(line, " --witness fl-secure/site/") != 3 ||
		!strings.Contains(cout.String(), "cosigned by 3 of 3 hospitals at round 8") {
		t.Errorf("coordinator output without the witnesses:\n%s", cout.String())
	}
	held := f[1:]
	for i := 1; i <= 3; i++ {
		held = append(held, "--checkpoint", filepath.Join(dir, fmt.Sprintf("site-%d", i), "state", "coordinator.checkpoint"))
	}
	if out, err := exec.Command(bin, held...).CombinedOutput(); err != nil {
		t.Errorf("audit with the hospitals' checkpoints: %v\n%s", err, out)
	}
	for i := 1; i <= 3; i++ {
		sd := filepath.Join(dir, fmt.Sprintf("site-%d", i), "state")
		roster := filepath.Join(dir, fmt.Sprintf("site-%d", i), "roster.json")
		if out, err := exec.Command(bin, "budget", "audit", "--ledger", filepath.Join(sd, "site-ledger.jsonl"), "--roster", roster, "--site", fmt.Sprint(i)).CombinedOutput(); err != nil {
			t.Errorf("site %d audit: %v\n%s", i, err, out)
		}
		g, err := os.Open(filepath.Join(dir, fmt.Sprintf("site-%d", i), "global.npy"))
		if err != nil {
			t.Fatal(err)
		}
		v, _, err := fl.ReadNPY(g)
		g.Close()
		if err != nil || len(v) != 31 {
			t.Errorf("site %d global model: %d values, %v", i, len(v), err)
		}
	}
	out, err := exec.Command(bin, "evaluate", "--state", filepath.Join(dir, "coordinator", "state"),
		"--data", filepath.Join(dir, "coordinator", "test.csv"), "--label", "malignant").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "round 8") {
		t.Errorf("evaluate: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func TestNetCommandsMisuse(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"provision", "--out", dir}, 2, "missing --sites"},
		{[]string{"provision", "--sites", "2", "--out", dir}, 1, "3 to 1000"},
		{[]string{"coordinator", "--config", "/no/such.conf"}, 2, "--config"},
		{[]string{"client", "--config", "/no/such.conf"}, 2, "--config"},
		{[]string{"evaluate", "--state", dir, "--data", "x.csv"}, 2, "missing --label"},
	} {
		code, out, errOut := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("%v: exit %d, want %d; output lacks %q:\n%s%s", tc.args, code, tc.code, tc.want, out, errOut)
		}
	}
	if code, _, _ := runCLI("provision", "--sites", "3", "--out", dir); code != 0 {
		t.Fatal("provision failed")
	}
	if code, _, errOut := runCLI("provision", "--sites", "3", "--out", dir); code != 1 || !strings.Contains(errOut, "refusing to overwrite") {
		t.Errorf("second provision: %d %s", code, errOut)
	}
	conf := filepath.Join(dir, "bad.conf")
	os.WriteFile(conf, []byte("rounds = 3\nbogus_key = 1\n"), 0o600)
	if code, _, errOut := runCLI("coordinator", "--config", conf); code != 2 || !strings.Contains(errOut, `unknown key "bogus-key"`) {
		t.Errorf("bad config: %d %s", code, errOut)
	}
}

// TestCoordinatorKill9 kills the coordinator process with SIGKILL in the
// middle of a run and starts it again on the same state: the clients
// reconnect, the ledger verifies, and every round is charged exactly once.
func TestCoordinatorKill9(t *testing.T) {
	bin, dir, addr, port := federationKit(t)
	start := func() (*exec.Cmd, *syncBuffer) {
		c := exec.Command(bin, "coordinator", "--config", filepath.Join(dir, "coordinator", "coordinator.conf"),
			"--listen", addr, "--rounds", "12", "--join-wait", "30s", "--phase-timeout", "20s")
		var out syncBuffer
		c.Stdout, c.Stderr = &out, &out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		return c, &out
	}
	coord, out := start()
	var clients []*exec.Cmd
	for i := 1; i <= 3; i++ {
		// A kill between a site's charge and the coordinator's charges the
		// sites for the retried round again (their data may have been
		// released), so their caps need room for it.
		c := exec.Command(bin, "client", "--config", filepath.Join(dir, fmt.Sprintf("site-%d", i), "client.conf"),
			"--coordinator", "localhost:"+port, "--epsilon-cap", "4")
		c.Stdout, c.Stderr = new(bytes.Buffer), new(bytes.Buffer)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(out.String(), "round=4 ") {
		if time.Now().After(deadline) {
			t.Fatalf("no round 4:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	coord.Process.Kill() // SIGKILL: no clean-up of any kind
	coord.Wait()
	coord, out = start()
	done := make(chan error, 1)
	go func() { done <- coord.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("restarted coordinator: %v\n%s", err, out.String())
		}
	case <-time.After(3 * time.Minute):
		coord.Process.Kill()
		t.Fatalf("restarted coordinator did not finish:\n%s", out.String())
	}
	for _, c := range clients {
		waitOrKill(c, 30*time.Second)
	}
	if !strings.Contains(out.String(), "resuming") {
		t.Errorf("the restart did not resume:\n%s", out.String())
	}
	ledger := filepath.Join(dir, "coordinator", "state", "coordinator-ledger.jsonl")
	roster := filepath.Join(dir, "coordinator", "roster.json")
	if o, err := exec.Command(bin, "budget", "audit", "--ledger", ledger, "--roster", roster, "--coordinator").CombinedOutput(); err != nil {
		t.Fatalf("audit: %v\n%s", err, o)
	}
	es, err := readLedgerRounds(ledger)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]int{}
	for _, r := range es {
		seen[r]++
	}
	for r := 1; r <= 12; r++ {
		if seen[r] != 1 {
			t.Errorf("round %d charged %d times", r, seen[r])
		}
	}
}

// waitOrKill waits for a process, killing it after d.
func waitOrKill(c *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		c.Process.Kill()
		<-done
		return fmt.Errorf("did not exit within %v; killed", d)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func readLedgerRounds(path string) ([]int, error) {
	es, err := dp.ReadLedger(path)
	if err != nil {
		return nil, err
	}
	var r []int
	for _, e := range es[1:] {
		if e.Kind == "charge" {
			r = append(r, e.Round)
		}
	}
	return r, nil
}

// The documented example configurations parse: every key is known, and
// the commands get as far as the files they name.
func TestExampleConfigs(t *testing.T) {
	code, _, errOut := runCLI("coordinator", "--config", "../../docs/examples/coordinator.conf")
	if code != 1 || !strings.Contains(errOut, "roster.json") {
		t.Errorf("coordinator example: exit %d: %s", code, errOut)
	}
	code, _, errOut = runCLI("client", "--config", "../../docs/examples/client.conf")
	if code != 1 || !strings.Contains(errOut, "roster.json") {
		t.Errorf("client example: exit %d: %s", code, errOut)
	}
}
