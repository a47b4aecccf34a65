package main

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol"
)

// alive reports whether the process whose pid is in file still runs; it
// kills it if so (the test started it).
func alive(t *testing.T, file string) bool {
	t.Helper()
	var b []byte
	for range 50 {
		if b, _ = os.ReadFile(file); len(bytes.TrimSpace(b)) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Fatalf("no pid in %s: %q", file, b)
	}
	// A killed process may linger a moment as a zombie until it is
	// reaped: only a process that is not one counts as alive.
	for range 50 {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return false
		}
		if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
			if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
				return false
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	return true
}

// TestAttackTrainerChildOutlivesRound: a trainer that exits 0 but leaves
// a background worker behind (its output sent elsewhere, so no pipe
// holds the round up). The worker is in the trainer's process group; poc
// kills such leftovers ("something it started may live on in its
// group"), the trainer runner kills the group only at the timeout. A
// leftover worker holds the round's model, may keep writing into the
// work directory while fl-secure reads the update back (between its
// Lstat and Open: a FIFO there blocks the client without any timeout),
// and keeps running across rounds.
func TestAttackTrainerChildOutlivesRound(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The trainer exits only once its worker runs (has written its pid).
	script := `sh -c 'echo $$ > ` + pidFile + `; exec sleep 30' >/dev/null 2>&1 </dev/null &
while [ ! -s ` + pidFile + ` ]; do sleep 0.01; done
cp "$FL_SECURE_MODEL" "$FL_SECURE_UPDATE"`
	tr, log := shellTrainer(t, script)
	if _, err := tr.train(request(t, dp.ClientLevel)); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if alive(t, pidFile) {
		t.Error("a process the trainer started is still running after its round ended (the trainer's process group is not killed after a normal exit)")
	}
}

// TestAttackTrainerTimeoutKillsGroup: at --train-timeout the trainer's
// whole process group is killed, its worker too.
func TestAttackTrainerTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	tr, _ := shellTrainer(t, `sh -c 'echo $$ > `+pidFile+`; exec sleep 30' & wait`)
	tr.timeout = 500 * time.Millisecond
	if _, err := tr.train(request(t, dp.ClientLevel)); err == nil || !strings.Contains(err.Error(), "train-timeout") {
		t.Fatalf("error %v", err)
	}
	if alive(t, pidFile) {
		t.Error("the trainer's worker survived the timeout")
	}
}

// TestAttackTrainerReadsParentEnviron: the client strips FL_SECURE_
// variables from the trainer's environment, but a passphrase given in
// FL_SECURE_PASSPHRASE stays in the client process's own initial
// environment, which a trainer running as the same user reads from
// /proc/$PPID/environ; os.Unsetenv does not change what the system shows
// there. The client takes the passphrase out of its environment (no
// process it starts inherits it) and, with --train-cmd, warns and names
// the remedy; with --passphrase-file the same trainer finds nothing in
// the client's environment.
func TestAttackTrainerReadsParentEnviron(t *testing.T) {
	const secret = "correct-horse-battery-staple-4711"
	if how := os.Getenv("FL_SECURE_ATTACK_CLIENT"); how != "" {
		// This process plays the client: started with the passphrase in
		// its environment, as "FL_SECURE_PASSPHRASE=… fl-secure client",
		// or in a file, as "fl-secure client --passphrase-file FILE".
		out := os.Getenv("ATTACK_OUT")
		command := `tr '\0' '\n' < /proc/$PPID/environ | grep '^FL_SECURE_PASSPHRASE=' > ` + out + `; cp "$FL_SECURE_MODEL" "$FL_SECURE_UPDATE"`
		var warn bytes.Buffer
		pass, err := clientPassphrase(os.Getenv("ATTACK_PASSFILE"), command, &warn)
		if err != nil || !pass.IsSet() {
			t.Fatalf("passphrase: %v", err)
		}
		if v, ok := os.LookupEnv("FL_SECURE_PASSPHRASE"); ok {
			t.Fatalf("the passphrase is still in the client's environment: %d bytes", len(v))
		}
		os.WriteFile(out+".warn", warn.Bytes(), 0o600)
		tr := &commandTrainer{ctx: context.Background(), timeout: time.Minute, out: &bytes.Buffer{}, command: command}
		if _, err := tr.train(request(t, dp.ClientLevel)); err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := os.Stat("/proc/self/environ"); err != nil {
		t.Skip("no /proc")
	}
	client := func(env ...string) (seen, warning string) {
		out := filepath.Join(t.TempDir(), "seen")
		cmd := exec.Command(os.Args[0], "-test.run=^TestAttackTrainerReadsParentEnviron$", "-test.count=1")
		cmd.Env = append(os.Environ(), append(env, "ATTACK_OUT="+out)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		b, _ := os.ReadFile(out)
		w, _ := os.ReadFile(out + ".warn")
		return string(b), string(w)
	}

	seen, warning := client("FL_SECURE_ATTACK_CLIENT=env", "FL_SECURE_PASSPHRASE="+secret)
	if strings.Contains(seen, secret) {
		// What the system shows of the initial environment, no process
		// can change: the warning is the client's defence here.
		t.Logf("as expected, a trainer of the same user read the passphrase from /proc/$PPID/environ")
	}
	for _, want := range []string{"warning", "FL_SECURE_PASSPHRASE", "/environ", "--passphrase-file", "another user"} {
		if !strings.Contains(warning, want) {
			t.Errorf("with the passphrase in the environment and --train-cmd, the client's warning lacks %q: %q", want, warning)
		}
	}
	if strings.Contains(warning, secret) {
		t.Errorf("the warning shows the passphrase: %q", warning)
	}

	file := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(file, []byte(secret+"\n"), 0o600)
	seen, warning = client("FL_SECURE_ATTACK_CLIENT=file", "ATTACK_PASSFILE="+file)
	if strings.Contains(seen, secret) {
		t.Errorf("with --passphrase-file, the trainer read the client's passphrase from /proc/$PPID/environ: %q", strings.TrimSpace(seen))
	}
	if warning != "" {
		t.Errorf("with --passphrase-file, the client warns: %q", warning)
	}
}

// TestAttackTrainerEnvCasing: variables the client strips whatever their
// case, and the round's values are passed only as values, never into
// the command line.
func TestAttackTrainerEnvCasing(t *testing.T) {
	t.Setenv("Fl_Secure_Passphrase", "s3cret")
	t.Setenv("FL_SECURE_PASSPHRASE_FILE", "/k")
	seen := filepath.Join(t.TempDir(), "env")
	tr, log := shellTrainer(t, `env > `+seen+`; cp "$FL_SECURE_MODEL" "$FL_SECURE_UPDATE"`)
	q := request(t, dp.RecordLevel)
	q.Clip = 1e300
	if _, err := tr.train(q); err == nil {
		// no records metadata: refused; the environment was still written
	}
	b, _ := os.ReadFile(seen)
	if strings.Contains(string(b), "s3cret") || strings.Contains(string(b), "/k") {
		t.Errorf("secrets in the trainer's environment:\n%s\n%s", b, log.String())
	}
	for _, want := range []string{"FL_SECURE_CLIP=1e+300", "FL_SECURE_RECORDS=7", "FL_SECURE_LEVEL=record"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("environment lacks %s", want)
		}
	}
}

// TestAttackUpdateNotARegularFile: a trainer (or a process it left
// behind) puts a FIFO, a directory or a symlink to a device at the
// update's path: refused, without blocking.
func TestAttackUpdateNotARegularFile(t *testing.T) {
	for name, script := range map[string]string{
		"fifo":      `mkfifo "$FL_SECURE_UPDATE"`,
		"directory": `mkdir "$FL_SECURE_UPDATE"`,
		"device":    `ln -s /dev/zero "$FL_SECURE_UPDATE"`,
	} {
		tr, _ := shellTrainer(t, script)
		done := make(chan error, 1)
		go func() { _, err := tr.train(request(t, dp.ClientLevel)); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the client blocked reading the update", name)
		}
	}
}

// TestAttackUpdateOversized: an update far larger than its layout (a
// header of 100 MiB claimed, a file of 50 MiB) is refused by size before
// it is read.
func TestAttackUpdateOversized(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.safetensors")
	f, _ := os.Create(big)
	f.Write([]byte{0, 0, 0x40, 0x06, 0, 0, 0, 0})
	f.Truncate(50 << 20)
	f.Close()
	tr, _ := shellTrainer(t, `cp `+big+` "$FL_SECURE_UPDATE"`)
	if _, err := tr.train(request(t, dp.ClientLevel)); err == nil || !strings.Contains(err.Error(), "bytes; an update of 4 values has at most") {
		t.Errorf("oversized update: %v", err)
	}
}

// TestAttackUpdateHeaderTricks: safetensors headers crafted to pass the
// layout check with other data: a duplicate key, overlapping offsets, an
// I64 tensor, a single flat tensor under a layout name with other shape,
// a non-finite F32.
func TestAttackUpdateHeaderTricks(t *testing.T) {
	raw := func(header string, data []byte) string {
		var b bytes.Buffer
		n := len(header)
		b.Write([]byte{byte(n), byte(n >> 8), 0, 0, 0, 0, 0, 0})
		b.WriteString(header)
		b.Write(data)
		p := filepath.Join(t.TempDir(), "u.safetensors")
		os.WriteFile(p, b.Bytes(), 0o600)
		return `cp ` + p + ` "$FL_SECURE_UPDATE"`
	}
	f64 := func(v ...float64) []byte {
		var b bytes.Buffer
		for _, x := range v {
			u := math.Float64bits(x)
			for i := range 8 {
				b.WriteByte(byte(u >> (8 * i)))
			}
		}
		return b.Bytes()
	}
	for name, script := range map[string]string{
		"duplicate weight": raw(`{"weight":{"dtype":"F64","shape":[1,3],"data_offsets":[0,24]},"bias":{"dtype":"F64","shape":[1],"data_offsets":[24,32]},"weight":{"dtype":"F64","shape":[1,3],"data_offsets":[32,56]}}`, f64(1, 2, 3, 4, 9, 9, 9)),
		"overlap":          raw(`{"weight":{"dtype":"F64","shape":[1,3],"data_offsets":[0,24]},"bias":{"dtype":"F64","shape":[1],"data_offsets":[16,24]}}`, f64(1, 2, 3)),
		"I64":              raw(`{"weight":{"dtype":"I64","shape":[1,3],"data_offsets":[0,24]},"bias":{"dtype":"F64","shape":[1],"data_offsets":[24,32]}}`, f64(1, 2, 3, 4)),
		"flat as weight":   raw(`{"weight":{"dtype":"F64","shape":[4],"data_offsets":[0,32]}}`, f64(1, 2, 3, 4)),
		"Inf":              raw(`{"weight":{"dtype":"F64","shape":[1,3],"data_offsets":[0,24]},"bias":{"dtype":"F64","shape":[1],"data_offsets":[24,32]}}`, f64(1, math.Inf(1), 3, 4)),
		"negative shape":   raw(`{"weight":{"dtype":"F64","shape":[-1,-3],"data_offsets":[0,24]},"bias":{"dtype":"F64","shape":[1],"data_offsets":[24,32]}}`, f64(1, 2, 3, 4)),
	} {
		tr, _ := shellTrainer(t, script)
		res, err := tr.train(request(t, dp.ClientLevel))
		if err == nil {
			t.Errorf("%s: accepted as %v", name, res.Update)
		}
	}
}

// TestAttackUpdateFileAtRecordLevel: --update (trained elsewhere, once)
// never answers a record-level round, whatever the coordinator announces.
func TestAttackUpdateFileAtRecordLevel(t *testing.T) {
	p := filepath.Join(t.TempDir(), "u.npy")
	var b bytes.Buffer
	fl.WriteNPY(&b, []float64{0, 0, 0, 0}, false)
	os.WriteFile(p, b.Bytes(), 0o600)
	for _, lv := range []dp.Level{dp.RecordLevel, "Client", ""} {
		q := request(t, dp.ClientLevel)
		q.Level = lv
		if _, err := fileTrainer(p)(q); err == nil {
			t.Errorf("--update answers a round at level %q", lv)
		}
	}
}

// TestAttackTinyScaleOracleOnReferenceTrainer: the coordinator's
// standardization reaches the trainer unchecked. With feature a centred
// on m and a scale of w/MaxFloat64, the repository's own Go trainer
// overflows exactly when some record's a lies farther than w from m, and
// the site then refuses the round (generic reason, no charge). Join or
// refuse is one patient's value, learned for free, as often as the
// coordinator likes: bisection gives the hospital's minimum and maximum
// of every feature.
func TestAttackTinyScaleOracleOnReferenceTrainer(t *testing.T) {
	bin := buildTrainer(t)
	outcome := func(csv string) string {
		data := filepath.Join(t.TempDir(), "d.csv")
		os.WriteFile(data, []byte(csv), 0o600)
		l, _ := fl.NewLayout("softmax", 2, 3, 0)
		q := protocol.TrainRequest{Round: 1, Level: dp.RecordLevel, Clip: 0.5, Layout: l, Model: make([]float64, 9),
			Mean: []float64{-0.5, 1}, Scale: []float64{4 / math.MaxFloat64, 3}, Records: 5}
		tr, _ := shellTrainer(t, bin+" --data "+data+" --label y")
		if _, err := tr.train(q); err != nil {
			return "refused"
		}
		return "joined"
	}
	a := outcome("a,b,y\n1,2,0\n2,-3,1\n3,4,2\n-4,5,1\n0.5,0,2\n")
	b := outcome("a,b,y\n1,2,0\n2,-3,1\n3,4,2\n-4,5,1\n40,0,2\n")
	if a != b {
		t.Errorf("with scale %.3g the site %s for the hospital's data and %s when one patient's a is 40 instead of 0.5", 4/math.MaxFloat64, a, b)
	}
}

// TestAttackUpdateSwappedForFIFO: the update is checked with Lstat and
// then opened by name. A worker the trainer left running swaps the
// update's name between a regular file and a FIFO; when the swap falls
// between the check and the open, the client opens the FIFO and blocks
// (no writer, no timeout: --train-timeout covers only the command), and
// sits out every later round. The race is retried a bounded number of
// times; the test passes if it is never won.
func TestAttackUpdateSwappedForFIFO(t *testing.T) {
	if p := os.Getenv("FL_SECURE_ATTACK_SWAP"); p != "" {
		// The worker: swap the name p between a regular file and a FIFO
		// until the work directory is removed.
		dir := filepath.Dir(p)
		reg, fifo, tmp := filepath.Join(dir, "r"), filepath.Join(dir, "f"), filepath.Join(dir, "t")
		good, _ := os.ReadFile(p)
		os.WriteFile(reg, good, 0o600)
		syscall.Mkfifo(fifo, 0o600)
		os.WriteFile(os.Getenv("ATTACK_OUT"), []byte(p), 0o600)
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			for _, src := range []string{reg, fifo} {
				os.Remove(tmp)
				if os.Link(src, tmp) != nil || os.Rename(tmp, p) != nil {
					return
				}
			}
		}
	}
	var good bytes.Buffer
	l, _ := fl.NewLayout("logistic", 3, 1, 0)
	ts, _ := l.Split([]float64{0, 0, 0, 0})
	fl.WriteSafetensors(&good, ts, nil)
	src := filepath.Join(t.TempDir(), "good.safetensors")
	os.WriteFile(src, good.Bytes(), 0o600)
	for attempt := range 30 {
		out := filepath.Join(t.TempDir(), "where")
		script := `cp ` + src + ` "$FL_SECURE_UPDATE"
FL_SECURE_ATTACK_SWAP="$FL_SECURE_UPDATE" ATTACK_OUT=` + out + ` ` + os.Args[0] + ` -test.run='^TestAttackUpdateSwappedForFIFO$' >/dev/null 2>&1 &
while [ ! -s ` + out + ` ]; do sleep 0.01; done; sleep 0.05`
		tr, _ := shellTrainer(t, script)
		done := make(chan error, 1)
		go func() { _, err := tr.train(request(t, dp.ClientLevel)); done <- err }()
		select {
		case <-done:
			continue
		case <-time.After(5 * time.Second):
			b, _ := os.ReadFile(out)
			// A reader waiting on the worker's FIFO lets a non-blocking
			// open for writing succeed: proof that the client is blocked
			// there. Closing it gives the client EOF and ends the round.
			f, err := os.OpenFile(filepath.Join(filepath.Dir(string(b)), "f"), os.O_WRONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				t.Fatalf("attempt %d: the client blocked for 5 s, not on the FIFO (%v)", attempt+1, err)
			}
			f.Close()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
			}
			t.Fatalf("attempt %d: the client blocked for 5 s opening a FIFO swapped in after its regular-file check", attempt+1)
		}
	}
}
