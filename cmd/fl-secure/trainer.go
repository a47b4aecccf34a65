package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol"
)

// The environment of a trainer command (docs/TRAINER.md).
const (
	envModel   = "FL_SECURE_MODEL"   // the global model, safetensors with named tensors
	envLayout  = "FL_SECURE_LAYOUT"  // the manifest: layout, standardization, round, level, clip, records
	envUpdate  = "FL_SECURE_UPDATE"  // where the command writes its update
	envWorkDir = "FL_SECURE_WORKDIR" // the private directory holding the three, removed after the command
	envRound   = "FL_SECURE_ROUND"
	envLevel   = "FL_SECURE_LEVEL"
	envClip    = "FL_SECURE_CLIP"
	envRecords = "FL_SECURE_RECORDS" // record level only
	envPrefix  = "FL_SECURE_"
)

// maxUpdateHeader bounds the safetensors header of an update file beyond
// what its tensors need.
const maxUpdateHeader = 1 << 20

// A commandTrainer runs the hospital's own training command every round:
// fl-secure writes the global model and its manifest to a fresh private
// directory, runs the command with their paths in its environment, and
// reads the update back (docs/TRAINER.md is the contract).
type commandTrainer struct {
	ctx     context.Context // the client's: cancelled on shutdown
	command string
	timeout time.Duration
	out     io.Writer // the hospital's log, for the command's stdout and stderr
}

// train runs the command for one round.
func (c *commandTrainer) train(q protocol.TrainRequest) (protocol.TrainResult, error) {
	dir, err := os.MkdirTemp("", "fl-secure-trainer-")
	if err != nil {
		return protocol.TrainResult{}, fmt.Errorf("trainer: private directory: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o700); err != nil {
		return protocol.TrainResult{}, fmt.Errorf("trainer: %w", err)
	}
	model, layout, update := filepath.Join(dir, "model.safetensors"), filepath.Join(dir, "layout.json"), filepath.Join(dir, "update.safetensors")
	ts, err := q.Layout.Split(q.Model)
	if err != nil {
		return protocol.TrainResult{}, fmt.Errorf("trainer: %w", err)
	}
	var buf bytes.Buffer
	if err := fl.WriteSafetensors(&buf, ts, map[string]string{"round": strconv.Itoa(q.Round), "model": q.Layout.Model}); err != nil {
		return protocol.TrainResult{}, fmt.Errorf("trainer: %w", err)
	}
	if err := os.WriteFile(model, buf.Bytes(), 0o600); err != nil {
		return protocol.TrainResult{}, fmt.Errorf("trainer: %w", err)
	}
	buf.Reset()
	if err := fl.WriteManifest(&buf, q.Manifest()); err != nil {
		return protocol.TrainResult{}, fmt.Errorf("trainer: %w", err)
	}
	if err := os.WriteFile(layout, buf.Bytes(), 0o600); err != nil {
		return protocol.TrainResult{}, fmt.Errorf("trainer: %w", err)
	}
	env := map[string]string{envModel: model, envLayout: layout, envUpdate: update, envWorkDir: dir,
		envRound: strconv.Itoa(q.Round), envLevel: string(q.Level), envClip: strconv.FormatFloat(q.Clip, 'g', -1, 64)}
	if q.Level == dp.RecordLevel {
		env[envRecords] = strconv.Itoa(q.Records)
	}
	if err := c.run(env, q.Round); err != nil {
		return protocol.TrainResult{}, err
	}
	u, meta, err := readUpdate(update, q.Layout)
	if err != nil {
		return protocol.TrainResult{}, fmt.Errorf("trainer: round %d: %w", q.Round, err)
	}
	res := protocol.TrainResult{Update: u}
	if q.Level == dp.RecordLevel {
		s, ok := meta["records"]
		if !ok {
			return protocol.TrainResult{}, fmt.Errorf("trainer: round %d: %s has no \"records\" metadata; a record-level update must name the records it summed (%s)", q.Round, filepath.Base(update), envRecords)
		}
		if res.Records, err = strconv.Atoi(s); err != nil {
			return protocol.TrainResult{}, fmt.Errorf("trainer: round %d: \"records\" metadata %q is not an integer", q.Round, truncate(s, 20))
		}
	}
	return res, nil
}

// run runs the command with env added to a copy of this process's
// environment stripped of every FL_SECURE_ variable (the passphrase among
// them), its output line by line to the hospital's log.
func (c *commandTrainer) run(env map[string]string, round int) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", c.command)
	cmd.Env = trainerEnv(os.Environ(), env)
	prefix := fmt.Sprintf("trainer (round %d): ", round)
	lw := &lineWriter{emit: func(line string) { fmt.Fprintf(c.out, "%s%s\n", prefix, line) }}
	cmd.Stdout, cmd.Stderr = lw, lw
	// The command's own children (a Python interpreter's workers, a
	// shell's commands) must not outlive a timeout: kill its whole group.
	// Where the system allows it (Linux), the command is also killed
	// should the client die first.
	setProcessGroup(cmd)
	cmd.Cancel = func() error { signalGroup(cmd, syscall.SIGKILL); return nil }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	// Nothing the command started outlives its round, however it ended: a
	// worker left running would hold the round's model and could change
	// the work directory while the update is read back.
	signalGroup(cmd, syscall.SIGKILL)
	lw.flush()
	switch {
	case err == nil:
		return nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("trainer: round %d: the command ran past --train-timeout %v and was killed", round, c.timeout)
	case c.ctx.Err() != nil:
		return fmt.Errorf("trainer: round %d: stopped with the client", round)
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return fmt.Errorf("trainer: round %d: the command exited with status %d (its output is above)", round, exit.ExitCode())
	}
	return fmt.Errorf("trainer: round %d: running the command: %w", round, err)
}

// trainerEnv returns base without any FL_SECURE_ variable, plus add.
func trainerEnv(base []string, add map[string]string) []string {
	var out []string
	for _, kv := range base {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(strings.ToUpper(k), envPrefix) {
			continue
		}
		out = append(out, kv)
	}
	for k, v := range add {
		out = append(out, k+"="+v)
	}
	return out
}

// readUpdate reads an update for layout l: safetensors holding the
// layout's named tensors (or one flat tensor of its length), or a flat
// .npy vector. It returns the flat vector and the file's metadata.
func readUpdate(path string, l fl.Layout) ([]float64, map[string]string, error) {
	// Checked on the open file, not by name: a process the trainer left
	// behind could swap the name between a check and an open. The open
	// follows no symbolic link and does not block on a FIFO.
	f, err := openUpdate(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("no update at %s", path)
		}
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a regular file (%s)", path, fileKind(fi.Mode()))
	}
	limit := int64(8+maxUpdateHeader) + 8*int64(l.Len())
	if fi.Size() > limit {
		return nil, nil, fmt.Errorf("%s has %d bytes; an update of %d values has at most %d", path, fi.Size(), l.Len(), limit)
	}
	// A file that grows after the check is still read only up to the cap.
	r := io.LimitReader(f, limit)
	if strings.HasSuffix(path, ".npy") {
		v, _, err := fl.ReadNPY(r)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(v) != l.Len() {
			return nil, nil, fmt.Errorf("%s holds %d values; the round's %s model has %d (%s)", path, len(v), l.Model, l.Len(), layoutText(l))
		}
		return v, nil, checkFinite(path, v)
	}
	ts, meta, err := fl.ReadSafetensors(r)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(ts) == 1 {
		for name, t := range ts {
			if len(t.Shape) == 1 && t.Shape[0] == l.Len() && (t.DType == "F32" || t.DType == "F64") && !layoutHas(l, name) {
				return t.Data, meta, checkFinite(path, t.Data)
			}
		}
	}
	v, err := l.Join(ts)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w (the round's layout: %s)", path, err, layoutText(l))
	}
	return v, meta, nil
}

// fileKind names the kind of a file that is not a regular one.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	case m&os.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "mode " + m.String()
}

func layoutHas(l fl.Layout, name string) bool {
	for _, t := range l.Tensors {
		if t.Name == name {
			return true
		}
	}
	return false
}

// layoutText names a layout's tensors and shapes: "weight [1 30], bias [1]".
func layoutText(l fl.Layout) string {
	var parts []string
	for _, t := range l.Tensors {
		parts = append(parts, fmt.Sprintf("%s %v", t.Name, t.Shape))
	}
	return strings.Join(parts, ", ")
}

func checkFinite(path string, v []float64) error {
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%s: value %d is NaN or infinite", path, i)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// fileTrainer sends the update in path every client-level round, read
// afresh each round (so that a hospital may replace it between rounds)
// and mapped through the round's layout.
func fileTrainer(path string) func(protocol.TrainRequest) (protocol.TrainResult, error) {
	return func(q protocol.TrainRequest) (protocol.TrainResult, error) {
		if q.Level != dp.ClientLevel {
			return protocol.TrainResult{}, errors.New("--update: an update trained elsewhere joins only client-level rounds; at record level use --train-cmd (docs/TRAINER.md)")
		}
		u, _, err := readUpdate(path, q.Layout)
		if err != nil {
			return protocol.TrainResult{}, fmt.Errorf("--update: %w", err)
		}
		return protocol.TrainResult{Update: u}, nil
	}
}
