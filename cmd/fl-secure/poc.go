package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol"
)

const pocUsage = `Usage: fl-secure poc [--sites N] [--mode secagg|he|plain] [--data wdbc|diabetes] [flags]

Runs a whole federation on this machine, as separate processes: it
provisions a coordinator's kit and one kit per site (with a demo split of
--data as each site's local.csv and a held-out coordinator/test.csv) in a
new private temporary directory, starts "fl-secure coordinator" on a free
loopback port and one "fl-secure client" per site, and shows their logs,
each line prefixed by its name, with a line per finished round. At the end
it audits every ledger (the coordinator's against the checkpoints each
hospital cosigned, and each hospital's) as "fl-secure budget audit" does,
evaluates the model on coordinator/test.csv as "fl-secure evaluate" does,
prints the closing table and removes the directory (--keep keeps it).

With --train-cmd every site trains with that command, as "fl-secure client
--train-cmd" runs a hospital's own trainer (docs/TRAINER.md), in poc's
working directory; {data} and {label} in it stand for the site's
local.csv and its label column.

Ctrl-C (SIGINT), SIGTERM or SIGHUP (its terminal went away) stops every
process poc started (SIGTERM to each one's process group, SIGKILL 10
seconds later) and removes the directory. Killed outright (SIGKILL, a
crash), poc cannot clean up: on Linux its processes die with it, and the
next poc run under the same parent directory removes the directory the
killed run left behind (unless that run had --keep), saying so. A process that
stops early stops the run, naming it and its last lines. Exit 0 if the
run finished and every ledger passed its audit; 1 if not; 2 on misuse;
130 when interrupted.

The kits' private keys are encrypted at rest only if FL_SECURE_PASSPHRASE
is set (the processes inherit it); without it every process warns that
they are not. poc makes up no passphrase of its own: every encrypted key
costs an scrypt evaluation (N = 2^18, 256 MiB) each time it is written or
read, which turns a run of under a second into one of about 20 seconds on
2 cores, and the directory is private (0700) and removed at the end.

Examples:
  fl-secure poc
  fl-secure poc --sites 5 --mode he --rounds 20
  fl-secure poc --data diabetes --epsilon 1 --keep
  fl-secure poc --train-cmd 'python3 docs/examples/trainer_numpy.py --data {data} --label {label}'
`

// The largest federation poc starts: every site is a process on this
// machine, and each secagg round costs every site work linear in the
// number of sites.
const pocMaxSites = 10

// pocClientGrace is how long the clients have to exit once the
// coordinator has finished the run.
var pocClientGrace = 30 * time.Second

// pocTail is how many of a process's last lines an error quotes.
const pocTail = 12

// A poc run's directory is named pocDirPrefix and a random suffix; unless
// the run keeps it (--keep), a file beside it, its name and pocPidSuffix,
// holds the run's process id.
const (
	pocDirPrefix = "fl-secure-poc-"
	pocPidSuffix = ".pid"
)

// removeStalePoc removes the directories under parent that poc runs left
// behind when they were killed before they could remove them, with
// their pid files: those whose pid file names a process that no longer
// runs (pocStale). Such a
// directory holds kits whose private keys may be unencrypted. A problem
// reading parent is not an error: the run goes on.
func removeStalePoc(parent string, stderr io.Writer) {
	es, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range es {
		name, ok := strings.CutSuffix(e.Name(), pocPidSuffix)
		if !ok || !strings.HasPrefix(name, pocDirPrefix) {
			continue
		}
		dir := filepath.Join(parent, name)
		pid, stale := pocStale(dir)
		if !stale {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(stderr, "fl-secure poc: warning: %s was left behind by a poc run (pid %d) that no longer runs; removing it: %v\n", dir, pid, err)
			continue
		}
		// A run killed while provisioning leaves the kits in the making
		// beside its directory (protocol.Provision builds them in
		// ".NAME.provision-*" and renames that into place).
		partial, _ := filepath.Glob(filepath.Join(parent, "."+name+".provision-*"))
		for _, p := range partial {
			os.RemoveAll(p)
		}
		os.Remove(dir + pocPidSuffix)
		fmt.Fprintf(stderr, "fl-secure poc: removed %s, left behind by a poc run (pid %d) that was killed before it could remove its kits and keys\n", dir, pid)
	}
}

// pocSite is a ledger's row of the closing table: a site's or the
// coordinator's. Rounds is what the process's summary counted, -1 if it
// printed none.
type pocSite struct {
	Site    int     `json:"site,omitempty"` // 0 for the coordinator
	Rounds  int     `json:"rounds"`
	Epsilon float64 `json:"epsilon"`
	// PatientEpsilon is, at client level, the per-patient ε of the last
	// charge (dp.PatientEpsilon).
	PatientEpsilon float64 `json:"patient_epsilon,omitempty"`
	Audit          string  `json:"audit"`
}

// pocResult is the closing table.
type pocResult struct {
	Mode        string     `json:"mode"`
	Data        string     `json:"data"`
	Level       string     `json:"level"`
	Rounds      int        `json:"rounds"`
	Target      float64    `json:"target_epsilon"`
	Delta       float64    `json:"delta"`
	Coordinator pocSite    `json:"coordinator"`
	Sites       []pocSite  `json:"sites"`
	ModelRound  int        `json:"model_round"`
	TestRows    int        `json:"test_rows"`
	Test        fl.Metrics `json:"test"`
	Dir         string     `json:"dir,omitempty"` // with --keep
}

// pocCmd runs "fl-secure poc": a federation of a coordinator and
// --sites clients, each a process of this program, provisioned into a
// temporary directory and audited at the end.
func pocCmd(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("poc", pocUsage, stderr)
	sites := fs.Int("sites", 3, fmt.Sprintf("number of sites, each a client process (3 to %d)", pocMaxSites))
	mode := fs.String("mode", "secagg", "secagg, he, or plain (NOT PRIVATE)")
	data := fs.String("data", "wdbc", "built-in data set split over the sites: wdbc or diabetes")
	rounds := fs.Int("rounds", 30, "training rounds")
	eps := fs.Float64("epsilon", 3, "whole-run ε, also every site's own cap (0: no DP)")
	delta := fs.Float64("delta", 1e-5, "δ")
	level := fs.String("level", "record", "record or client")
	keep := fs.Bool("keep", false, "keep the directory (kits, ledgers, checkpoints) and print where it is")
	parent := fs.String("dir", "", "create the run's directory under this one (default: the system's temporary directory)")
	timeout := fs.Duration("timeout", 10*time.Minute, "stop the federation if it has not finished after this long")
	asJSON := fs.Bool("json", false, "print the closing table as JSON")
	trainCmd := fs.String("train-cmd", "", "every site trains with this command (client --train-cmd), run in this directory; {data} and {label} stand for the site's local.csv and label column")
	if help, err := parse(args); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure poc -h"`)
		}
		return 0
	}
	set, err := pocSettings(*sites, *mode, *data, *rounds, *eps, *delta, *level, *timeout)
	if err != nil {
		return fail(stderr, err, `run "fl-secure poc -h" for the flags and their ranges`)
	}
	if *trainCmd != "" {
		wd, err := os.Getwd()
		if err != nil {
			return fail(stderr, fmt.Errorf("poc: --train-cmd runs in this directory: %w", err), "")
		}
		// The clients run in the federation's directory; the command, in
		// the one poc was started in, where its paths are.
		set.trainCmd = "cd " + shellQuote(wd) + " && " + *trainCmd
		// Trainers take longer than a phase of messages.
		set.coordArgs = append(set.coordArgs, "--train-timeout", "5m")
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(stderr, fmt.Errorf("poc: finding this program to start its processes: %w", err), "")
	}
	pass, err := passphrase("")
	if err != nil {
		return fail(stderr, err, "")
	}

	// Signals first: an interrupt during provisioning stops nothing but
	// still removes the directory.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigc)

	if *parent == "" {
		*parent = os.TempDir()
	}
	removeStalePoc(*parent, stderr)
	dir, err := os.MkdirTemp(*parent, pocDirPrefix)
	if err != nil {
		return fail(stderr, fmt.Errorf("poc: --dir: %w", err), "")
	}
	pidFile := dir + pocPidSuffix
	if !*keep {
		// Marks the directory as this run's, to be removed by a later
		// run should this one be killed before it can remove it.
		if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
			os.RemoveAll(dir)
			return fail(stderr, fmt.Errorf("poc: %w", err), "")
		}
	}
	cleanup := func() {
		if *keep {
			fmt.Fprintf(stderr, "fl-secure poc: kept %s\n", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(stderr, "fl-secure poc: warning: removing %s: %v\n", dir, err)
			return
		}
		os.Remove(pidFile)
	}
	if !pass.IsSet() {
		fmt.Fprintln(stderr, "fl-secure poc: no passphrase: the kits' private keys are written UNENCRYPTED in a private temporary directory; set FL_SECURE_PASSPHRASE to encrypt them")
	}
	if err := protocol.Provision(dir, set.sites, &protocol.ProvisionOptions{Hosts: []string{"127.0.0.1"}, Passphrase: pass}); err != nil {
		cleanup()
		return fail(stderr, err, "")
	}
	// Provision builds the kits elsewhere and moves them into place, a
	// directory others may list: the run's stays private to its user.
	if err := os.Chmod(dir, 0o700); err != nil {
		cleanup()
		return fail(stderr, fmt.Errorf("poc: %w", err), "")
	}
	if err := writeDemoData(dir, set.data, set.sites); err != nil {
		cleanup()
		return fail(stderr, fmt.Errorf("poc: splitting --data %s over the kits: %w", set.data, err), "")
	}
	select {
	case <-sigc:
		cleanup()
		fmt.Fprintln(stderr, "fl-secure: interrupted")
		return exitInterrupted
	default:
	}

	f := &pocFederation{exe: exe, dir: dir, set: set, out: &prefixer{w: stderr}, sigc: sigc}
	err = f.run()
	if errors.Is(err, errInterrupted) {
		cleanup()
		fmt.Fprintln(stderr, "fl-secure: interrupted")
		return exitInterrupted
	}
	if err != nil {
		cleanup()
		hint := ""
		if !*keep {
			hint = `"fl-secure poc --keep" keeps the kits, states and ledgers to look into`
		}
		return fail(stderr, err, hint)
	}

	res, err := f.close()
	if err != nil {
		cleanup()
		return fail(stderr, err, "")
	}
	if *keep {
		res.Dir = dir
	}
	code := 0
	if a := res.Coordinator.Audit; a != "ok" && a != pocNoLedger {
		code = 1
	}
	for _, s := range res.Sites {
		if s.Audit != "ok" {
			code = 1
		}
	}
	if *asJSON {
		if c := printJSON(stdout, stderr, res); c != 0 {
			code = c
		}
	} else {
		printPoc(stdout, res, set.task == fl.Regression)
	}
	switch {
	case !*keep:
		cleanup()
	case !*asJSON:
		fmt.Fprintf(stdout, "kits, states and ledgers kept in %s; audit them again with:\n  %s\n", dir, strings.Join(f.auditCmds, "\n  "))
	}
	if code != 0 {
		fmt.Fprintln(stderr, "fl-secure: error: a ledger failed its audit (see the table)")
	}
	return code
}

// pocConfig is a checked poc run.
type pocConfig struct {
	sites, rounds       int
	mode, data, level   string
	label, model        string
	features            int
	task                fl.Task
	eps, delta          float64
	timeout             time.Duration
	coordArgs, siteArgs []string
	// trainCmd is --train-cmd, its {data} and {label} not yet replaced.
	trainCmd string
}

// pocSettings checks poc's flags and derives the coordinator's and the
// clients' flags from them.
func pocSettings(sites int, mode, data string, rounds int, eps, delta float64, level string, timeout time.Duration) (*pocConfig, error) {
	switch {
	case sites < 3 || sites > pocMaxSites:
		return nil, usagef("--sites %d: want 3 to %d (every site is a process on this machine)", sites, pocMaxSites)
	case mode != string(protocol.SecAgg) && mode != string(protocol.HE) && mode != string(protocol.Plain):
		return nil, usagef("--mode %q: want secagg, he or plain", mode)
	case data != "wdbc" && data != "diabetes":
		return nil, usagef("--data %q: want wdbc or diabetes (a built-in data set, split over the sites)", data)
	case rounds < 1 || rounds > 1000:
		return nil, usagef("--rounds %d: want 1 to 1000", rounds)
	case !(eps >= 0) || math.IsInf(eps, 0):
		return nil, usagef("--epsilon %v: want a finite ε ≥ 0 (0 for no DP)", eps)
	case !(delta > 0 && delta < 1):
		return nil, usagef("--delta %v: want 0 < δ < 1", delta)
	case level != string(dp.RecordLevel) && level != string(dp.ClientLevel):
		return nil, usagef("--level %q: want record or client", level)
	case timeout <= 0:
		return nil, usagef("--timeout %v: want a positive duration", timeout)
	}
	c := &pocConfig{sites: sites, rounds: rounds, mode: mode, data: data, level: level, eps: eps, delta: delta, timeout: timeout}
	c.label, c.task, c.model, c.features = "malignant", fl.Binary, "logistic", 30
	if data == "diabetes" {
		c.label, c.task, c.model, c.features = "progression", fl.Regression, "linear", 10
	}
	if mode == string(protocol.Plain) {
		c.eps = 0
	}
	e := strconv.FormatFloat(c.eps, 'g', -1, 64)
	d := strconv.FormatFloat(delta, 'g', -1, 64)
	c.coordArgs = []string{"--mode", mode, "--level", level, "--rounds", strconv.Itoa(rounds), "--epsilon", e, "--delta", d,
		"--model", c.model, "--features", strconv.Itoa(c.features), "--feature-ranges", data, "--join-wait", "30s"}
	if c.task == fl.Binary && level == string(dp.RecordLevel) {
		// The settings of "fl-secure simulate" for full-batch DP-SGD on a
		// classification task.
		c.coordArgs = append(c.coordArgs, "--clip", "0.5", "--learning-rate", "6")
	}
	c.siteArgs = []string{"--label", c.label, "--level", level, "--delta", d}
	if c.eps > 0 {
		c.siteArgs = append(c.siteArgs, "--epsilon-cap", e)
	} else {
		c.siteArgs = append(c.siteArgs, "--allow-no-dp")
	}
	if mode == string(protocol.Plain) {
		c.siteArgs = append(c.siteArgs, "--allow-plain")
	}
	return c, nil
}

// shellQuote quotes s as one word for /bin/sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// pocNoLedger is the coordinator's audit result in a run without DP.
const pocNoLedger = "no ledger (no DP)"

// A pocFederation is a poc run's processes.
type pocFederation struct {
	exe, dir  string
	set       *pocConfig
	out       *prefixer
	sigc      chan os.Signal
	procs     []*pocProc // the coordinator, then site 1…N
	exits     chan *pocProc
	addr      chan string
	auditCmds []string
}

// A pocProc is one process of the federation.
type pocProc struct {
	name string
	cmd  *exec.Cmd
	log  *lineWriter
	err  error // from Wait, once done is closed
	done chan struct{}

	mu     sync.Mutex
	rounds int // from the summary it printed; -1 before
}

var (
	// The coordinator's log line that names the address it listens on
	// (log/slog's text handler, coordinatorCmd's "listening").
	pocListening = regexp.MustCompile(`\bmsg=listening\b.*\baddr=(\S+)`)
	// The coordinator's log line for a finished round.
	pocRoundDone = regexp.MustCompile(`\bmsg="round done".*\bround=(\d+)\b.*\bparticipants=(\d+)\b.*\bepsilon=(\S+)`)
	// The summaries clientCmd and coordinatorCmd print.
	pocSiteRounds  = regexp.MustCompile(`took part in (\d+) rounds`)
	pocCoordRounds = regexp.MustCompile(`^(\d+) rounds completed`)
)

// start starts one process, its output prefixed by name.
func (f *pocFederation) start(name string, args []string, summary *regexp.Regexp, onLine func(string)) error {
	p := &pocProc{name: name, done: make(chan struct{}), rounds: -1}
	p.log = &lineWriter{emit: func(line string) {
		f.out.line(name, line)
		if m := summary.FindStringSubmatch(line); m != nil {
			p.mu.Lock()
			p.rounds, _ = strconv.Atoi(m[1])
			p.mu.Unlock()
		}
		if onLine != nil {
			onLine(line)
		}
	}}
	p.cmd = exec.Command(f.exe, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.Dir = f.dir
	setProcessGroup(p.cmd)
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("poc: starting %s: %w", name, err)
	}
	f.out.line("poc", fmt.Sprintf("started %s (pid %d)", name, p.cmd.Process.Pid))
	f.procs = append(f.procs, p)
	go func() {
		p.err = p.cmd.Wait()
		p.log.flush()
		close(p.done)
		f.exits <- p
	}()
	return nil
}

// run starts the coordinator and the clients and waits until the
// coordinator has finished and every client has exited: nil then, or the
// first process that stopped early, an interrupt (errInterrupted) or the
// timeout. Whatever it returns, no process it started is left running.
func (f *pocFederation) run() (err error) {
	f.exits = make(chan *pocProc, f.set.sites+1)
	f.addr = make(chan string, 1)
	defer func() {
		if err != nil {
			f.stop()
		}
	}()
	timeout := time.NewTimer(f.set.timeout)
	defer timeout.Stop()

	coordDir := filepath.Join(f.dir, "coordinator")
	args := append([]string{"coordinator", "--config", filepath.Join(coordDir, "coordinator.conf"), "--listen", "127.0.0.1:0"}, f.set.coordArgs...)
	var once sync.Once
	if err := f.start("coordinator", args, pocCoordRounds, func(line string) {
		if m := pocListening.FindStringSubmatch(line); m != nil {
			once.Do(func() { f.addr <- m[1] })
		}
		if m := pocRoundDone.FindStringSubmatch(line); m != nil {
			e, _ := strconv.ParseFloat(m[3], 64)
			f.out.line("poc", fmt.Sprintf("round %s/%d done: %s sites, ε spent %.4f", m[1], f.set.rounds, m[2], e))
		}
	}); err != nil {
		return err
	}
	var addr string
	select {
	case addr = <-f.addr:
	case p := <-f.exits:
		return f.early(p)
	case <-f.sigc:
		return errInterrupted
	case <-timeout.C:
		return fmt.Errorf("poc: the coordinator did not start listening within --timeout %v", f.set.timeout)
	}
	for i := 1; i <= f.set.sites; i++ {
		kit := filepath.Join(f.dir, fmt.Sprintf("site-%d", i))
		args := append([]string{"client", "--config", filepath.Join(kit, "client.conf"), "--coordinator", addr}, f.set.siteArgs...)
		if f.set.trainCmd != "" {
			data := filepath.Join(kit, "local.csv")
			cmd := strings.NewReplacer("{data}", shellQuote(data), "{label}", shellQuote(f.set.label)).Replace(f.set.trainCmd)
			// --data too: a source flag replaces the kit's, and the site's
			// records feed the statistics release.
			args = append(args, "--data", data, "--train-cmd", cmd)
		}
		if err := f.start(fmt.Sprintf("site-%d", i), args, pocSiteRounds, nil); err != nil {
			return err
		}
	}
	running := len(f.procs)
	var after <-chan time.Time // once the coordinator has finished
	for running > 0 {
		select {
		case p := <-f.exits:
			running--
			// A client ends with its session once the coordinator has ended
			// the run, which the coordinator itself does after it: any
			// clean exit is a finish, and a stuck run meets the timeout.
			if p.err != nil {
				return f.early(p)
			}
			if p == f.procs[0] {
				t := time.NewTimer(pocClientGrace)
				defer t.Stop()
				after = t.C
			}
		case <-after:
			var left []string
			for _, p := range f.procs {
				select {
				case <-p.done:
				default:
					left = append(left, p.name)
				}
			}
			return fmt.Errorf("poc: the coordinator finished, but %s did not exit within %v of it", strings.Join(left, ", "), pocClientGrace)
		case <-f.sigc:
			return errInterrupted
		case <-timeout.C:
			return fmt.Errorf("poc: the federation did not finish within --timeout %v", f.set.timeout)
		}
	}
	return nil
}

// early is the error for p stopping before the run finished.
func (f *pocFederation) early(p *pocProc) error {
	how := "exited before the coordinator listened"
	if p.err != nil {
		how = p.err.Error()
	}
	last := p.log.last()
	if len(last) == 0 {
		return fmt.Errorf("poc: %s stopped early (%s), printing nothing", p.name, how)
	}
	prefix := fmt.Sprintf("\n  %s | ", p.name)
	return fmt.Errorf("poc: %s stopped early (%s); its last lines:%s%s", p.name, how, prefix, strings.Join(last, prefix))
}

// stop stops every process still running: SIGTERM to its process group
// (the coordinator and the clients shut down on it), then, after a grace
// period, SIGKILL. It returns once every process has exited.
func (f *pocFederation) stop() {
	const grace = 10 * time.Second
	running := 0
	for _, p := range f.procs {
		select {
		case <-p.done:
		default:
			running++
		}
	}
	if running > 0 {
		f.out.line("poc", fmt.Sprintf("stopping %d processes", running))
	}
	var wg sync.WaitGroup
	for _, p := range f.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-p.done:
				// Reaped, but something it started may live on in its group.
				signalGroup(p.cmd, syscall.SIGKILL)
				return
			default:
			}
			signalGroup(p.cmd, syscall.SIGTERM)
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-p.done:
			case <-t.C:
				f.out.line("poc", fmt.Sprintf("%s did not stop within %v of SIGTERM; killing it", p.name, grace))
				signalGroup(p.cmd, syscall.SIGKILL)
				<-p.done
			}
			signalGroup(p.cmd, syscall.SIGKILL)
		}()
	}
	wg.Wait()
}

// close audits every ledger and evaluates the model: the closing table.
func (f *pocFederation) close() (*pocResult, error) {
	s := f.set
	res := &pocResult{Mode: s.mode, Data: s.data, Level: s.level, Rounds: s.rounds, Target: s.eps, Delta: s.delta}
	coordDir := filepath.Join(f.dir, "coordinator")
	state := filepath.Join(coordDir, "state")
	roster := filepath.Join(coordDir, "roster.json")
	r, err := protocol.LoadRoster(roster)
	if err != nil {
		return nil, err
	}

	// The coordinator's ledger, against the checkpoint of it that each
	// hospital cosigned and holds itself.
	args := []string{"budget", "audit", "--ledger", filepath.Join(state, coordinatorLedger), "--roster", roster, "--coordinator"}
	ws, err := protocol.WitnessCheckpoints(state, r)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		args = append(args, "--checkpoint", filepath.Join(f.dir, fmt.Sprintf("site-%d", w.Site), "state", protocol.WitnessFile), "--witness", w.Arg())
	}
	res.Coordinator = pocSite{Rounds: f.procs[0].summaryRounds()}
	if _, err := os.Stat(args[3]); errors.Is(err, os.ErrNotExist) && s.eps == 0 {
		// Without DP the coordinator charges nothing and keeps no ledger;
		// the sites still record their rounds.
		res.Coordinator.Audit = pocNoLedger
	} else {
		f.audit(&res.Coordinator, args)
	}
	for i := 1; i <= s.sites; i++ {
		kit := filepath.Join(f.dir, fmt.Sprintf("site-%d", i))
		args := []string{"budget", "audit", "--ledger", filepath.Join(kit, "state", "site-ledger.jsonl"), "--roster", filepath.Join(kit, "roster.json"), "--site", strconv.Itoa(i)}
		row := pocSite{Site: i, Rounds: f.procs[i].summaryRounds()}
		f.audit(&row, args)
		res.Sites = append(res.Sites, row)
	}

	// The model, on the held-out test set, as "fl-secure evaluate" does.
	d, err := fl.LoadCSV(filepath.Join(coordDir, "test.csv"), s.label, s.task)
	if err != nil {
		return nil, err
	}
	res.Test, res.ModelRound, err = protocol.EvaluateState(state, s.model, 16, d)
	if err != nil {
		return nil, fmt.Errorf("poc: evaluating the model: %w", err)
	}
	res.TestRows = d.Rows()
	return res, nil
}

// audit runs "fl-secure budget audit" in this process on args and fills
// in row: the audited ε and "ok", or the audit's first problem.
func (f *pocFederation) audit(row *pocSite, args []string) {
	f.auditCmds = append(f.auditCmds, "fl-secure "+strings.Join(args, " "))
	var out, errOut bytes.Buffer
	code := run(append(args, "--json"), &out, &errOut)
	var a dp.Audit
	if err := json.Unmarshal(out.Bytes(), &a); err != nil && code == 0 {
		row.Audit = "FAILED: unreadable audit: " + err.Error()
		return
	}
	row.Epsilon, row.PatientEpsilon, row.Audit = a.Epsilon, a.PatientEpsilon, "ok"
	if code != 0 {
		problem, _, _ := strings.Cut(strings.TrimSpace(errOut.String()), "\n")
		row.Audit = "FAILED: " + strings.TrimPrefix(problem, "fl-secure: error: ")
	}
}

// summaryRounds returns the rounds p's closing summary counted, or -1.
func (p *pocProc) summaryRounds() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rounds
}

func printPoc(w io.Writer, r *pocResult, regression bool) {
	target := fmt.Sprintf("ε = %g, δ = %g, %s level", r.Target, r.Delta, r.Level)
	if r.Target == 0 {
		target = "no DP"
	}
	fmt.Fprintf(w, "federation: %d sites, mode %s, data %s, %d rounds, %s\n", len(r.Sites), r.Mode, r.Data, r.Rounds, target)
	const row = "%-12s %7s %10s  %s\n"
	fmt.Fprintf(w, row, "ledger", "rounds", "ε spent", "audit")
	count := func(n int) string {
		if n < 0 {
			return "?"
		}
		return strconv.Itoa(n)
	}
	for _, s := range r.Sites {
		fmt.Fprintf(w, row, fmt.Sprintf("site-%d", s.Site), count(s.Rounds), fmt.Sprintf("%.4f", s.Epsilon), s.Audit)
	}
	c := r.Coordinator
	spent := fmt.Sprintf("%.4f", c.Epsilon)
	if c.Audit == pocNoLedger {
		spent = "-"
	}
	fmt.Fprintf(w, row, "coordinator", count(c.Rounds), spent, c.Audit)
	if c.PatientEpsilon > 0 {
		fmt.Fprintf(w, "client level: ε %.4g protects %s; per patient ε %.4g (%s)\n", c.Epsilon, dp.ClientRelationText, c.PatientEpsilon, dp.PatientRelationText)
	}
	if regression {
		fmt.Fprintf(w, "model (round %d) on %d held-out rows: RMSE %.2f, R² %.3f\n", r.ModelRound, r.TestRows, r.Test.RMSE, r.Test.R2)
	} else {
		fmt.Fprintf(w, "model (round %d) on %d held-out rows: accuracy %.3f, AUC %.3f, log loss %.3f\n", r.ModelRound, r.TestRows, r.Test.Accuracy, r.Test.AUC, r.Test.LogLoss)
	}
}

// A prefixer writes whole lines from many processes to one writer, each
// prefixed by its source's name.
type prefixer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *prefixer) line(name, line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%-11s | %s\n", name, line)
}
