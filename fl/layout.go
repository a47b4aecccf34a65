package fl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
)

// A LayoutTensor is one named tensor of a model's parameters: its name and
// shape (row-major), and where its elements sit in the flat vector.
type LayoutTensor struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
	// Element e of the tensor (row-major) is flat[base + (e/row)·stride +
	// e%row]: a tensor of contiguous rows has stride = row.
	base, row, stride int
}

// Len returns the number of elements of t.
func (t LayoutTensor) Len() int {
	n := 1
	for _, s := range t.Shape {
		n *= s
	}
	return n
}

func (t LayoutTensor) flat(e int) int { return t.base + (e/t.row)*t.stride + e%t.row }

// A Layout names the tensors of a model's flat parameter vector (the
// order Model uses), so that a trainer outside fl-secure can exchange
// named tensors, as PyTorch's state_dict names them:
//
//	logistic, linear: "weight" [1, d], "bias" [1]
//	softmax:          "weight" [c, d], "bias" [c]
//	mlp:              "hidden.weight" [h, d], "hidden.bias" [h],
//	                  "out.weight" [o, h], "out.bias" [o]
//
// Each weight row multiplies the standardized features in the data's
// column order. A softmax model's flat vector interleaves the rows (class
// k is weight[k], then bias[k]); the layout maps them.
type Layout struct {
	Model    string         `json:"model"`
	Features int            `json:"features"`
	Outputs  int            `json:"outputs"`
	Hidden   int            `json:"hidden,omitempty"`
	Tensors  []LayoutTensor `json:"tensors"`
}

// maxLayoutParams bounds a layout's flat vector, as a round's length is
// bounded.
const maxLayoutParams = 1 << 28

// NewLayout returns the layout of the named model over d features with
// outputs outputs (1 for logistic and linear, the classes for softmax, the
// output units for mlp) and, for mlp, hidden units.
func NewLayout(model string, d, outputs, hidden int) (Layout, error) {
	l := Layout{Model: model, Features: d, Outputs: outputs}
	if d < 1 || outputs < 1 || d > maxLayoutParams || outputs > maxLayoutParams {
		return Layout{}, fmt.Errorf("fl: layout of a %s model with %d features and %d outputs", model, d, outputs)
	}
	contiguous := func(name string, base int, shape ...int) LayoutTensor {
		row := shape[len(shape)-1]
		return LayoutTensor{Name: name, Shape: shape, base: base, row: row, stride: row}
	}
	switch model {
	case "logistic", "linear":
		if outputs != 1 {
			return Layout{}, fmt.Errorf("fl: a %s model has 1 output, not %d", model, outputs)
		}
		l.Tensors = []LayoutTensor{contiguous("weight", 0, 1, d), contiguous("bias", d, 1)}
	case "softmax":
		if outputs < 2 || int64(outputs)*int64(d+1) > maxLayoutParams {
			return Layout{}, fmt.Errorf("fl: a softmax model with %d classes over %d features", outputs, d)
		}
		l.Tensors = []LayoutTensor{
			{Name: "weight", Shape: []int{outputs, d}, base: 0, row: d, stride: d + 1},
			{Name: "bias", Shape: []int{outputs}, base: d, row: 1, stride: d + 1},
		}
	case "mlp":
		if hidden < 1 || hidden > 4096 {
			return Layout{}, fmt.Errorf("fl: MLP hidden width %d outside [1, 4096]", hidden)
		}
		if int64(hidden)*int64(d+1)+int64(outputs)*int64(hidden+1) > maxLayoutParams {
			return Layout{}, fmt.Errorf("fl: an MLP of %d×%d×%d is too large", d, hidden, outputs)
		}
		l.Hidden = hidden
		o1 := hidden * d
		o2 := o1 + hidden
		o3 := o2 + outputs*hidden
		l.Tensors = []LayoutTensor{contiguous("hidden.weight", 0, hidden, d), contiguous("hidden.bias", o1, hidden),
			contiguous("out.weight", o2, outputs, hidden), contiguous("out.bias", o3, outputs)}
	default:
		return Layout{}, fmt.Errorf("fl: unknown model %q (logistic, softmax, linear, mlp)", model)
	}
	return l, nil
}

// LayoutOf returns the layout of m.
func LayoutOf(m Model) (Layout, error) {
	switch m := m.(type) {
	case logistic:
		return NewLayout("logistic", m.d, 1, 0)
	case linear:
		return NewLayout("linear", m.d, 1, 0)
	case softmax:
		return NewLayout("softmax", m.d, m.c, 0)
	case mlp:
		return NewLayout("mlp", m.d, m.o, m.h)
	}
	return Layout{}, fmt.Errorf("fl: no layout for model %s", m.Name())
}

// Len returns the length of the flat parameter vector.
func (l Layout) Len() int {
	n := 0
	for _, t := range l.Tensors {
		n += t.Len()
	}
	return n
}

// Names returns the tensor names in layout order.
func (l Layout) Names() []string {
	out := make([]string, len(l.Tensors))
	for i, t := range l.Tensors {
		out[i] = t.Name
	}
	return out
}

// Split maps a flat parameter vector to named float64 tensors.
func (l Layout) Split(flat []float64) (map[string]Tensor, error) {
	if len(flat) != l.Len() {
		return nil, fmt.Errorf("fl: %d values for a %s layout of %d", len(flat), l.Model, l.Len())
	}
	out := make(map[string]Tensor, len(l.Tensors))
	for _, t := range l.Tensors {
		data := make([]float64, t.Len())
		for e := range data {
			data[e] = flat[t.flat(e)]
		}
		out[t.Name] = Tensor{DType: "F64", Shape: slices.Clone(t.Shape), Data: data}
	}
	return out, nil
}

// Join maps named tensors back to the flat vector, checking that they are
// exactly the layout's tensors, each with its shape, a float dtype (F32 or
// F64) and finite values; the error names the first mismatch.
func (l Layout) Join(ts map[string]Tensor) ([]float64, error) {
	var extra []string
	for name := range ts {
		if !slices.Contains(l.Names(), name) {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return nil, fmt.Errorf("fl: tensor %q is not in the %s layout (want %s)", truncate(extra[0], 80), l.Model, strings.Join(l.Names(), ", "))
	}
	flat := make([]float64, l.Len())
	for _, want := range l.Tensors {
		t, ok := ts[want.Name]
		if !ok {
			return nil, fmt.Errorf("fl: tensor %q of the %s layout is missing (want %s)", want.Name, l.Model, strings.Join(l.Names(), ", "))
		}
		if t.DType != "F32" && t.DType != "F64" {
			return nil, fmt.Errorf("fl: tensor %q has dtype %s; want F32 or F64", want.Name, t.DType)
		}
		if !slices.Equal(t.Shape, want.Shape) {
			return nil, fmt.Errorf("fl: tensor %q has shape %v; the layout's is %v", want.Name, t.Shape, want.Shape)
		}
		if len(t.Data) != want.Len() {
			return nil, fmt.Errorf("fl: tensor %q holds %d values for shape %v", want.Name, len(t.Data), want.Shape)
		}
		for e, v := range t.Data {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("fl: tensor %q holds a NaN or infinite value at element %d", want.Name, e)
			}
			flat[want.flat(e)] = v
		}
	}
	return flat, nil
}

// check verifies that l is the layout NewLayout gives for its model and
// sizes, and fills in the element positions a decoded layout lacks.
func (l *Layout) check() error {
	want, err := NewLayout(l.Model, l.Features, l.Outputs, l.Hidden)
	if err != nil {
		return err
	}
	if len(l.Tensors) != len(want.Tensors) {
		return fmt.Errorf("fl: layout lists %d tensors; a %s model has %d (%s)", len(l.Tensors), l.Model, len(want.Tensors), strings.Join(want.Names(), ", "))
	}
	for i, t := range l.Tensors {
		w := want.Tensors[i]
		if t.Name != w.Name || !slices.Equal(t.Shape, w.Shape) {
			return fmt.Errorf("fl: layout tensor %d is %q %v; a %s model's is %q %v", i+1, truncate(t.Name, 80), t.Shape, l.Model, w.Name, w.Shape)
		}
	}
	*l = want
	return nil
}

// ManifestFormat identifies the trainer manifest's version.
const ManifestFormat = "fl-secure-trainer/1"

// A Manifest is the JSON file beside a global model that a trainer outside
// fl-secure reads: the model's layout, the standardization its inputs
// need, and what the round asks of the trainer. docs/TRAINER.md is the
// contract.
type Manifest struct {
	Format string `json:"format"`
	Layout
	// Round is the training round (1, 2, …); 0 for a model written
	// outside a round.
	Round int `json:"round"`
	// Level is "client" (return trained − global) or "record" (return the
	// sum over Records records of each record's loss gradient at the
	// global model, clipped to L2 norm Clip).
	Level string  `json:"level,omitempty"`
	Clip  float64 `json:"clip,omitempty"`
	// Records is, at record level, the number of records the sum must
	// cover: every record the hospital holds, each exactly once.
	Records int `json:"records,omitempty"`
	// Mean and Scale standardize the features: x' = (x − mean) / scale,
	// in the data's column order. LabelMean and LabelScale, for a linear
	// model, standardize the label the same way.
	Mean       []float64 `json:"mean"`
	Scale      []float64 `json:"scale"`
	LabelMean  *float64  `json:"label_mean,omitempty"`
	LabelScale *float64  `json:"label_scale,omitempty"`
}

// WriteManifest writes m as indented JSON.
func WriteManifest(w io.Writer, m *Manifest) error {
	m.Format = ManifestFormat
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("fl: manifest: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// ReadManifest reads and checks a manifest: its format, a layout that is
// exactly its model's, and standardization vectors of the features'
// length with positive finite scales.
func ReadManifest(r io.Reader) (*Manifest, error) {
	b, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("fl: manifest: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("fl: manifest: %w", err)
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("fl: manifest format %q; want %q", truncate(m.Format, 80), ManifestFormat)
	}
	if err := m.Layout.check(); err != nil {
		return nil, err
	}
	if len(m.Mean) != m.Features || len(m.Scale) != m.Features {
		return nil, fmt.Errorf("fl: manifest standardizes %d means and %d scales for %d features", len(m.Mean), len(m.Scale), m.Features)
	}
	for j := range m.Mean {
		if math.IsNaN(m.Mean[j]) || math.IsInf(m.Mean[j], 0) || !(m.Scale[j] > 0) || math.IsInf(m.Scale[j], 0) {
			return nil, fmt.Errorf("fl: manifest feature %d: mean %v, scale %v", j+1, m.Mean[j], m.Scale[j])
		}
	}
	if (m.LabelMean == nil) != (m.LabelScale == nil) {
		return nil, errors.New("fl: manifest gives one of label_mean and label_scale without the other")
	}
	if m.LabelScale != nil && (!(*m.LabelScale > 0) || math.IsInf(*m.LabelScale, 0) || math.IsNaN(*m.LabelMean) || math.IsInf(*m.LabelMean, 0)) {
		return nil, fmt.Errorf("fl: manifest label mean %v, scale %v", *m.LabelMean, *m.LabelScale)
	}
	return &m, nil
}
