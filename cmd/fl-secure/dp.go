package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/fl-secure/fl-secure/dp"
)

const dpUsage = `Usage:
  fl-secure dp epsilon   --noise-multiplier S --sampling-rate Q --steps T --delta D
                         [--accountant rdp|pld] [--neighbouring add-remove|replace] [--json]
  fl-secure dp calibrate --epsilon E --delta D --steps T --sampling-rate Q
                         [--accountant rdp|pld] [--neighbouring …] [--json]
  fl-secure dp plan      --epsilon E --delta D --rounds R --sites N [--threshold T]
                         [--colluders C] [--records M] [--clip C] [--dim D] [--bits B] [--json]

Examples:
  fl-secure dp epsilon --noise-multiplier 1.1 --sampling-rate 0.01 --steps 1000 --delta 1e-5
  fl-secure dp calibrate --epsilon 3 --delta 1e-5 --steps 1000 --sampling-rate 0.01 --accountant pld
  fl-secure dp plan --epsilon 4 --delta 1e-6 --rounds 50 --sites 8 --threshold 6 --colluders 1 --clip 1
`

// errMisuse marks errors in how the command was called (exit 2).
var errMisuse = errors.New("misuse")

// usageError is a misuse error whose text names the problem.
type usageError string

func (e usageError) Error() string        { return string(e) }
func (e usageError) Is(target error) bool { return target == errMisuse }

func usagef(format string, a ...any) error { return usageError(fmt.Sprintf(format, a...)) }

// A flagError is a command line the flag package refused (an unknown
// flag, a value that does not parse): fail prints it on one line under
// the command's name, with a pointer to the command's help.
type flagError struct {
	cmd string // "simulate", "budget audit"
	msg string
}

func (e *flagError) Error() string        { return e.msg }
func (e *flagError) Is(target error) bool { return target == errMisuse }

// Exit codes of every command.
const (
	exitOK          = 0
	exitFailure     = 1
	exitMisuse      = 2
	exitInterrupted = 130 // 128 + SIGINT, as shells report it
)

// errInterrupted is what a command that was stopped by SIGINT or SIGTERM
// reports; fail prints "fl-secure: interrupted" and exits 130.
var errInterrupted = errors.New("interrupted")

// interrupted returns errInterrupted if err ended a command whose context
// ctx was cancelled by a signal: a context from signal.NotifyContext
// (whose cause is then the signal) or from signalContext. Any other err is
// returned unchanged. Commands pass what they fail with through it:
//
//	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
//	defer stop()
//	…
//	return fail(stderr, interrupted(ctx, err), "")
func interrupted(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	// A plain cancellation's cause is the context's error itself; a
	// signal's is its own error, which matches context.Canceled.
	if cause := context.Cause(ctx); cause == ctx.Err() || !errors.Is(cause, context.Canceled) {
		return err
	}
	return errInterrupted
}

// signalContext returns a context cancelled by SIGINT or SIGTERM (see
// interrupted), and the function that stops listening for them.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// fail reports err on stderr, one "fl-secure: error:" line per line of its
// text, then the hint, and returns the exit code: 2 for misuse, 130 for an
// interruption, 1 otherwise. A flag the command line got wrong is one line
// naming the command and a pointer to its help, whatever the hint.
func fail(stderr io.Writer, err error, hint string) int {
	var fe *flagError
	switch {
	case errors.Is(err, errInterrupted):
		fmt.Fprintln(stderr, "fl-secure: interrupted")
		return exitInterrupted
	case errors.As(err, &fe):
		fmt.Fprintf(stderr, "fl-secure %s: %s\n", fe.cmd, fe.msg)
		fmt.Fprintf(stderr, "fl-secure: hint: run \"fl-secure %s -h\" for the flags\n", fe.cmd)
		return exitMisuse
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(stderr, "fl-secure: error: %s\n", line)
	}
	if hint != "" {
		fmt.Fprintf(stderr, "fl-secure: hint: %s\n", hint)
	}
	if errors.Is(err, errMisuse) {
		return exitMisuse
	}
	return exitFailure
}

// streams is the standard error run hands to a command, carrying the
// standard output beside it: a command's help (-h) is its output, and goes
// there, while its errors go to standard error.
type streams struct {
	io.Writer           // standard error
	stdout    io.Writer // standard output
}

// helpOutput returns where a command given stderr prints its help: the
// standard output run paired with stderr, or stderr itself.
func helpOutput(stderr io.Writer) io.Writer {
	if s, ok := stderr.(*streams); ok {
		return s.stdout
	}
	return stderr
}

// unwrap returns the writer under a streams.
func unwrap(w io.Writer) io.Writer {
	if s, ok := w.(*streams); ok {
		return s.Writer
	}
	return w
}

// printHelp prints a command's help text followed by its flags, under one
// "Flags:" heading.
func printHelp(w io.Writer, fs *flag.FlagSet, help string) {
	help = strings.TrimRight(help, "\n")
	help = strings.TrimSuffix(help, "Flags:")
	fmt.Fprintf(w, "%s\n\nFlags:\n", strings.TrimRight(help, "\n"))
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// newFlags returns a flag set for command name (its help text is help,
// without the flags), and a function that parses args and checks the
// required flags were given. With -h or --help the help and the flags go
// to the standard output and parse returns true; a flag that is unknown or
// does not parse is an error of one line (a *flagError) for fail.
func newFlags(name, help string, stderr io.Writer) (*flag.FlagSet, func(args []string, required ...string) (bool, error)) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	parse := func(args []string, required ...string) (bool, error) {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printHelp(helpOutput(stderr), fs, help)
				return true, nil
			}
			return false, &flagError{cmd: name, msg: err.Error()}
		}
		if fs.NArg() > 0 {
			return false, usagef("unexpected argument %q", fs.Arg(0))
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for _, r := range required {
			if !set[r] {
				return false, usagef("missing --%s", r)
			}
		}
		return false, nil
	}
	return fs, parse
}

func dpCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, dpUsage)
		return 2
	}
	switch args[0] {
	case "epsilon":
		return dpEpsilon(args[1:], stdout, stderr)
	case "calibrate":
		return dpCalibrate(args[1:], stdout, stderr)
	case "plan":
		return dpPlan(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, dpUsage)
		return 0
	}
	return fail(stderr, usagef("unknown dp command %q", args[0]), `run "fl-secure dp help"`)
}

type accountantFlags struct {
	accountant, relation string
	asJSON               bool
}

func (a *accountantFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.accountant, "accountant", "rdp", "accountant: rdp (Rényi DP, Mironov–Talwar–Zhang 2019) or pld (privacy loss distributions)")
	fs.StringVar(&a.relation, "neighbouring", "add-remove", "neighbouring relation: add-remove or replace")
	fs.BoolVar(&a.asJSON, "json", false, "print a JSON object")
}

func (a *accountantFlags) parse() (dp.Neighbouring, error) {
	if a.accountant != dp.RDP && a.accountant != dp.PLD {
		return 0, usagef("--accountant %q: want rdp or pld", a.accountant)
	}
	n, err := dp.ParseNeighbouring(a.relation)
	if err != nil {
		return 0, usagef("--neighbouring %q: want add-remove or replace", a.relation)
	}
	return n, nil
}

// checkRange returns a misuse error naming the flag when ok is false.
func checkRange(name string, v float64, ok bool, want string) error {
	if !ok || math.IsNaN(v) {
		return usagef("--%s %v: want %s", name, v, want)
	}
	return nil
}

func dpEpsilon(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("dp epsilon", "Usage: fl-secure dp epsilon --noise-multiplier S --sampling-rate Q --steps T --delta D [flags]\n\nPrints the ε spent by T steps of the (Poisson-subsampled) Gaussian mechanism.\n", stderr)
	var af accountantFlags
	af.register(fs)
	z := fs.Float64("noise-multiplier", 0, "noise standard deviation divided by the clipping norm")
	q := fs.Float64("sampling-rate", 1, "Poisson sampling rate (1: every record or site takes part)")
	steps := fs.Int("steps", 0, "number of steps (rounds)")
	delta := fs.Float64("delta", 0, "target δ")
	if help, err := parse(args, "noise-multiplier", "steps", "delta"); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure dp epsilon -h"`)
		}
		return 0
	}
	rel, err := af.parse()
	if err == nil {
		err = errors.Join(
			checkRange("noise-multiplier", *z, *z > 0 && !math.IsInf(*z, 0), "a positive number"),
			checkRange("sampling-rate", *q, *q > 0 && *q <= 1, "a rate in (0, 1]"),
			checkRange("steps", float64(*steps), *steps >= 1, "a positive count"),
			checkRange("delta", *delta, *delta > 0 && *delta < 1, "a probability in (0, 1)"),
		)
	}
	if err != nil {
		return fail(stderr, err, "")
	}
	eps, err := dp.Epsilon(af.accountant, rel, *delta, dp.Event{Mechanism: dp.GaussianMechanism, NoiseMultiplier: *z, SamplingRate: *q, Count: *steps})
	if err != nil {
		return fail(stderr, err, "")
	}
	if af.asJSON {
		return printJSON(stdout, stderr, map[string]any{
			"epsilon": eps, "delta": *delta, "noise_multiplier": *z, "sampling_rate": *q, "steps": *steps,
			"accountant": af.accountant, "neighbouring": rel.String(), "mechanism": dp.GaussianMechanism,
		})
	}
	fmt.Fprintln(stdout, formatFloat(eps))
	fmt.Fprintf(stderr, "fl-secure: ε at δ = %g, %s accountant, %s neighbours\n", *delta, af.accountant, rel)
	return 0
}

func dpCalibrate(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("dp calibrate", "Usage: fl-secure dp calibrate --epsilon E --delta D --steps T --sampling-rate Q [flags]\n\nPrints the smallest noise multiplier whose ε after T steps is at most E.\n", stderr)
	var af accountantFlags
	af.register(fs)
	target := fs.Float64("epsilon", 0, "target ε for the whole run")
	q := fs.Float64("sampling-rate", 1, "Poisson sampling rate")
	steps := fs.Int("steps", 0, "number of steps (rounds)")
	delta := fs.Float64("delta", 0, "target δ")
	if help, err := parse(args, "epsilon", "steps", "delta"); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure dp calibrate -h"`)
		}
		return 0
	}
	rel, err := af.parse()
	if err == nil {
		err = errors.Join(
			checkRange("epsilon", *target, *target > 0 && !math.IsInf(*target, 0), "a positive number"),
			checkRange("sampling-rate", *q, *q > 0 && *q <= 1, "a rate in (0, 1]"),
			checkRange("steps", float64(*steps), *steps >= 1, "a positive count"),
			checkRange("delta", *delta, *delta > 0 && *delta < 1, "a probability in (0, 1)"),
		)
	}
	if err != nil {
		return fail(stderr, err, "")
	}
	c, err := dp.Calibrate(af.accountant, rel, dp.GaussianMechanism, *target, *delta, *steps, *q)
	if err != nil {
		return fail(stderr, err, "")
	}
	if af.asJSON {
		return printJSON(stdout, stderr, map[string]any{
			"noise_multiplier": c.NoiseMultiplier, "epsilon": c.Epsilon, "target_epsilon": *target, "delta": *delta,
			"sampling_rate": *q, "steps": *steps, "accountant": af.accountant, "neighbouring": rel.String(),
		})
	}
	fmt.Fprintln(stdout, formatFloat(c.NoiseMultiplier))
	fmt.Fprintf(stderr, "fl-secure: achieves ε = %.6g ≤ %g at δ = %g (%s accountant, %s neighbours)\n", c.Epsilon, *target, *delta, af.accountant, rel)
	return 0
}

func formatFloat(x float64) string {
	return fmt.Sprintf("%.10g", x)
}

func printJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fail(stderr, err, "")
	}
	return 0
}

func dpPlan(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("dp plan", `Usage: fl-secure dp plan --epsilon E --delta D --rounds R --sites N [flags]

A preflight for client-level DP under secure aggregation: every site takes
part in every round, clips its update to --clip, and adds a share of discrete
Gaussian noise sized so that the threshold's honest survivors (threshold −
colluders) alone reach the σ the accountant needs. Prints two ε, each with
its neighbouring relation: the hospital's (its whole contribution replaced
by zero; --epsilon is this one) and the larger per-patient ε (one patient's
records changed, which moves a hospital's clipped update by up to 2·clip).
Then σ, each site's share, the expected noise-to-signal ratio, and warnings
about dangerous settings.
`, stderr)
	var p dp.PreflightConfig
	fs.Float64Var(&p.Epsilon, "epsilon", 0, "target ε for the whole run")
	fs.Float64Var(&p.Delta, "delta", 0, "target δ")
	fs.IntVar(&p.Rounds, "rounds", 0, "number of rounds")
	fs.IntVar(&p.Sites, "sites", 0, "number of sites (hospitals) n")
	fs.IntVar(&p.Threshold, "threshold", 0, "fewest surviving sites a round may finish with (default ⌈2n/3⌉)")
	fs.IntVar(&p.Colluders, "colluders", 0, "sites assumed to collude with the coordinator")
	fs.IntVar(&p.RecordsPerSite, "records", 0, "records per site (for the δ check)")
	fs.Float64Var(&p.Clip, "clip", 0, "L2 norm each site's update is clipped to (required: without it there is no guarantee)")
	fs.IntVar(&p.Dim, "dim", 1000, "model size (coordinates)")
	fs.IntVar(&p.Bits, "bits", 32, "secure-aggregation ring width")
	asJSON := fs.Bool("json", false, "print a JSON object")
	if help, err := parse(args, "epsilon", "delta", "rounds", "sites"); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure dp plan -h"`)
		}
		return 0
	}
	threshold := p.Threshold
	if threshold == 0 {
		threshold = (2*p.Sites + 2) / 3
	}
	err := errors.Join(
		checkRange("epsilon", p.Epsilon, p.Epsilon > 0 && !math.IsInf(p.Epsilon, 0), "a positive number"),
		checkRange("delta", p.Delta, p.Delta > 0 && p.Delta < 1, "a probability in (0, 1)"),
		checkRange("rounds", float64(p.Rounds), p.Rounds >= 1, "a positive count"),
		checkRange("sites", float64(p.Sites), p.Sites >= 1, "a positive count"),
		checkRange("threshold", float64(threshold), threshold >= 1 && threshold <= p.Sites, "between 1 and --sites"),
		checkRange("colluders", float64(p.Colluders), p.Colluders >= 0 && p.Colluders < threshold, "at least 0 and below --threshold"),
		checkRange("clip", p.Clip, p.Clip >= 0 && !math.IsInf(p.Clip, 0), "a non-negative number"),
		checkRange("dim", float64(p.Dim), p.Dim >= 1, "a positive count"),
	)
	if err != nil {
		return fail(stderr, err, "")
	}
	pf, err := dp.PlanPreflight(p)
	if errors.Is(err, dp.ErrNoClipping) {
		return fail(stderr, errors.New("no clipping (--clip 0): a site's update has unbounded sensitivity and no ε holds"), "pass --clip, the L2 norm each site's update is clipped to")
	}
	if err != nil {
		return fail(stderr, err, "")
	}
	// The per-patient figure of the same rounds: the events the plan
	// achieves, accounted at sensitivity 2·clip.
	patient, err := dp.PatientEpsilon(pf.Accountant, pf.Delta,
		dp.Event{Mechanism: dp.DiscreteGaussianMechanism, NoiseMultiplier: pf.EffectiveMultiple, SamplingRate: 1, Count: pf.Rounds})
	if err != nil {
		return fail(stderr, err, "")
	}
	if *asJSON {
		return printJSON(stdout, stderr, planJSON{pf, dp.ClientRelationText, patient, dp.PatientRelationText})
	}
	fmt.Fprintf(stdout, "privacy          client level, δ = %g over %d rounds (%s accountant, target ε = %g)\n", pf.Delta, pf.Rounds, pf.Accountant, pf.Epsilon)
	fmt.Fprintf(stdout, "  per hospital   ε = %.6g  — %s\n", pf.AchievedEpsilon, dp.ClientRelationText)
	fmt.Fprintf(stdout, "  per patient    ε = %.6g  — %s\n", patient, dp.PatientRelationText)
	fmt.Fprintf(stdout, "noise multiplier %.6g (σ / clip)\n", pf.NoiseMultiplier)
	fmt.Fprintf(stdout, "σ in the sum     %.6g  (reached by the %d honest survivors alone: threshold %d − colluders %d)\n", pf.Sigma, pf.HonestSurvivors, pf.Threshold, pf.Colluders)
	fmt.Fprintf(stdout, "each site adds   %.6g  (discrete Gaussian on a grid of step 2^%.0f, %d-bit ring)\n", pf.SiteSigma, math.Log2(pf.Grid), pf.Bits)
	fmt.Fprintf(stdout, "σ if all %d sites survive  %.6g\n", pf.Sites, pf.SumSigmaAllSites)
	fmt.Fprintf(stdout, "noise-to-signal  %.3g  (‖noise‖ ≈ σ·√d against n·clip, d = %d)\n", pf.NoiseToSignal, pf.Dim)
	fmt.Fprintf(stdout, "wraparound       ≤ %.2g per round\n", pf.WrapProbability)
	for _, w := range pf.Warnings {
		fmt.Fprintf(stderr, "fl-secure: warning: %s\n", w)
	}
	return 0
}

// planJSON is dp plan's JSON: the plan, whose achieved_epsilon is the
// hospital's, and beside it the per-patient ε, each with its relation in
// words.
type planJSON struct {
	*dp.Preflight
	HospitalRelation string  `json:"hospital_relation"`
	PatientEpsilon   float64 `json:"patient_epsilon"`
	PatientRelation  string  `json:"patient_relation"`
}
