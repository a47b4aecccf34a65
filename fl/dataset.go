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

// ReadCSV parses a CSV table (see LoadCSV). Errors name the line and column.
func ReadCSV(r io.Reader, label string, task Task) (*Dataset, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = false
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("fl: reading the header: %w", err)
	}
	li := -1
	d := &Dataset{Label: label, Task: task}
	for i, h := range head {
		h = strings.TrimSpace(h)
		if h == label {
			if li >= 0 {
				return nil, fmt.Errorf("fl: label column %q appears twice", label)
			}
			li = i
			continue
		}
		d.Features = append(d.Features, h)
	}
	if li < 0 {
		return nil, fmt.Errorf("fl: no label column %q in the header (columns: %s)", label, strings.Join(head, ", "))
	}
	if len(d.Features) == 0 {
		return nil, errors.New("fl: no feature columns")
	}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("fl: %w", err)
		}
		if len(d.Y) >= maxRows {
			return nil, fmt.Errorf("fl: more than %d rows", maxRows)
		}
		x := make([]float64, 0, len(d.Features))
		var y float64
		for i, s := range rec {
			v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
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
	}
	if len(d.Y) < 2 {
		return nil, fmt.Errorf("fl: %d data rows", len(d.Y))
	}
	switch task {
	case Binary, Multiclass:
		maxc := 0
		for i, y := range d.Y {
			if y != math.Trunc(y) || y < 0 || y > 1000 {
				return nil, fmt.Errorf("fl: row %d: label %v is not a class index", i+1, y)
			}
			maxc = max(maxc, int(y))
		}
		d.Classes = maxc + 1
		if task == Binary && d.Classes > 2 {
			return nil, fmt.Errorf("fl: binary task but label values up to %d", maxc)
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
