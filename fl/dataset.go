package fl

import (
	"embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

//go:embed datasets/wdbc.csv datasets/diabetes.csv datasets/README.md datasets/wdbc-ranges.csv datasets/diabetes-ranges.csv
var embedded embed.FS

// Task says what a label means.
type Task int

const (
	// Binary classification: labels 0 or 1.
	Binary Task = iota
	// Multiclass classification: labels 0..Classes−1.
	Multiclass
	// Regression: real-valued labels.
	Regression
)

func (t Task) String() string {
	switch t {
	case Binary:
		return "binary"
	case Multiclass:
		return "multiclass"
	case Regression:
		return "regression"
	}
	return fmt.Sprintf("Task(%d)", int(t))
}

// A Dataset is a table of numeric features and one label per row.
type Dataset struct {
	Name     string
	Features []string
	Label    string
	X        [][]float64
	Y        []float64
	Task     Task
	Classes  int // for classification
}

// Rows returns the number of rows.
func (d *Dataset) Rows() int { return len(d.Y) }

// Dim returns the number of features.
func (d *Dataset) Dim() int { return len(d.Features) }

// Builtin names the embedded data sets: "wdbc" (breast cancer diagnosis,
// binary, 569 rows) and "diabetes" (disease progression, regression, 442
// rows). Their provenance is in datasets/README.md (Provenance()).
var Builtin = map[string]struct {
	file, label string
	task        Task
}{
	"wdbc":     {"datasets/wdbc.csv", "malignant", Binary},
	"diabetes": {"datasets/diabetes.csv", "progression", Regression},
}

// Provenance returns the embedded data sets' provenance note.
func Provenance() string {
	b, _ := embedded.ReadFile("datasets/README.md")
	return string(b)
}

// LoadBuiltin returns an embedded data set by name.
func LoadBuiltin(name string) (*Dataset, error) {
	b, ok := Builtin[name]
	if !ok {
		return nil, fmt.Errorf("fl: no built-in data set %q (have wdbc, diabetes)", name)
	}
	f, err := embedded.Open(b.file)
	if err != nil {
		return nil, fmt.Errorf("fl: internal error: %w", err)
	}
	defer f.Close()
	d, err := ReadCSV(f, b.label, b.task)
	if err != nil {
		return nil, err
	}
	d.Name = name
	return d, nil
}

// LoadCSV reads a CSV file with a header row; label names the label
// column. Every other column must be numeric.
func LoadCSV(path, label string, task Task) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("fl: %w", err)
	}
	defer f.Close()
	d, err := ReadCSV(f, label, task)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	d.Name = path
	return d, nil
}

// maxRows bounds what ReadCSV will load.
const maxRows = 10_000_000

// MaxValue bounds the magnitude of a value ReadCSV accepts: a square of
// it summed over maxRows rows, as the standardization statistics sum them,
// stays finite (1e150² · 1e7 = 1e307 < 1.8e308).
const MaxValue = 1e150

// Errors of ReadCSV that say the label does not fit the task; callers may
// suggest another model.
var (
	// ErrNotBinary: a binary task's label has more than two classes.
	ErrNotBinary = errors.New("fl: more than two classes for a binary task")
	// ErrNotClass: a classification label that is not a class index.
	ErrNotClass = errors.New("fl: a label that is not a class index")
)

// labelError is an error about the label column that is also kind.
type labelError struct {
	msg  string
	kind error
}

func (e *labelError) Error() string        { return e.msg }
func (e *labelError) Is(target error) bool { return target == e.kind }

// ReadCSV parses a CSV table (see LoadCSV). Errors name the line of the
// file (1-based, the header is line 1) and the column. A classification
// label must hold at least two classes.
func ReadCSV(r io.Reader, label string, task Task) (*Dataset, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = false
	head, err := cr.Read()
	if err == io.EOF {
		return nil, errors.New("fl: the file is empty: want a header line naming the columns, then one line per record")
	}
	if err != nil {
		return nil, fmt.Errorf("fl: the header: %w", err)
	}
	li := -1
	d := &Dataset{Label: label, Task: task}
	for i, h := range head {
		h = strings.TrimSpace(h)
		head[i] = h
		if h == label {
			if li >= 0 {
				return nil, fmt.Errorf("fl: line 1: label column %q appears twice", label)
			}
			li = i
			continue
		}
		d.Features = append(d.Features, h)
	}
	if li < 0 {
		return nil, fmt.Errorf("fl: line 1: no label column %q in the header (columns: %s)", label, strings.Join(head, ", "))
	}
	if len(d.Features) == 0 {
		return nil, errors.New("fl: line 1: no feature columns beside the label")
	}
	var lines []int // the line of each record
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("fl: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(d.Y) >= maxRows {
			return nil, fmt.Errorf("fl: line %d: more than %d records", line, maxRows)
		}
		x := make([]float64, 0, len(d.Features))
		var y float64
		for i, s := range rec {
			v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			switch {
			case err != nil && errors.Is(err, strconv.ErrRange), err == nil && math.Abs(v) > MaxValue:
				return nil, fmt.Errorf("fl: line %d, column %q: %q is out of range: want a magnitude of at most %g", line, head[i], s, MaxValue)
			case err != nil || math.IsNaN(v) || math.IsInf(v, 0):
				return nil, fmt.Errorf("fl: line %d, column %q: %q is not a finite number", line, head[i], s)
			}
			if i == li {
				y = v
			} else {
				x = append(x, v)
			}
		}
		d.X = append(d.X, x)
		d.Y = append(d.Y, y)
		lines = append(lines, line)
	}
	if len(d.Y) < 2 {
		return nil, fmt.Errorf("fl: %d data rows after the header: want at least 2", len(d.Y))
	}
	switch task {
	case Binary, Multiclass:
		maxc := 0
		seen := map[int]bool{}
		for i, y := range d.Y {
			if y != math.Trunc(y) || y < 0 || y > 1000 {
				return nil, &labelError{fmt.Sprintf("fl: line %d, column %q: label %v is not a class index (0, 1, …, at most 1000)", lines[i], label, y), ErrNotClass}
			}
			maxc = max(maxc, int(y))
			seen[int(y)] = true
		}
		if len(seen) < 2 {
			return nil, fmt.Errorf("fl: column %q holds one class only (every label is %d): a classifier needs records of at least two classes", label, maxc)
		}
		d.Classes = maxc + 1
		if task == Binary && d.Classes > 2 {
			return nil, &labelError{fmt.Sprintf("fl: column %q holds labels up to %d (%d classes), too many for a binary task", label, maxc, len(seen)), ErrNotBinary}
		}
		d.Classes = max(d.Classes, 2)
	}
	return d, nil
}

// Subset returns the rows idx of d (sharing row slices).
func (d *Dataset) Subset(idx []int) *Dataset {
	s := &Dataset{Name: d.Name, Features: d.Features, Label: d.Label, Task: d.Task, Classes: d.Classes}
	for _, i := range idx {
		s.X = append(s.X, d.X[i])
		s.Y = append(s.Y, d.Y[i])
	}
	return s
}

// WriteCSV writes d as CSV with a header, the label column last.
func WriteCSV(w io.Writer, d *Dataset) error {
	cw := csv.NewWriter(w)
	head := append(append([]string(nil), d.Features...), d.Label)
	if err := cw.Write(head); err != nil {
		return err
	}
	rec := make([]string, len(head))
	for i, x := range d.X {
		for j, v := range x {
			rec[j] = strconv.FormatFloat(v, 'g', -1, 64)
		}
		rec[len(x)] = strconv.FormatFloat(d.Y[i], 'g', -1, 64)
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WithLabel returns d with, for regression, the label as a last feature,
// so that federated standardization aggregates its mean and variance with
// the features'. Other tasks return d itself.
func WithLabel(d *Dataset) *Dataset {
	if d.Task != Regression {
		return d
	}
	out := *d
	out.Features = append(append([]string(nil), d.Features...), d.Label)
	out.X = make([][]float64, len(d.X))
	for i, x := range d.X {
		out.X[i] = append(append([]float64(nil), x...), d.Y[i])
	}
	return &out
}

// ScaleLabels returns d with regression labels standardized, (y − mean) /
// scale; RMSE on it is in units of scale. Other tasks return d itself.
func ScaleLabels(d *Dataset, mean, scale float64) *Dataset {
	if d.Task != Regression {
		return d
	}
	out := *d
	out.Y = make([]float64, len(d.Y))
	for i, y := range d.Y {
		out.Y[i] = (y - mean) / scale
	}
	return &out
}
