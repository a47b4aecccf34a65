package fl

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestLayoutMatchesModels(t *testing.T) {
	const d = 4
	for _, tc := range []struct {
		name    string
		task    Task
		classes int
		names   string
	}{
		{"logistic", Binary, 2, "weight bias"},
		{"linear", Regression, 0, "weight bias"},
		{"softmax", Multiclass, 3, "weight bias"},
		{"mlp", Multiclass, 3, "hidden.weight hidden.bias out.weight out.bias"},
		{"mlp", Binary, 2, "hidden.weight hidden.bias out.weight out.bias"},
	} {
		m, err := NewModel(tc.name, tc.task, d, tc.classes, 5)
		if err != nil {
			t.Fatal(err)
		}
		l, err := LayoutOf(m)
		if err != nil {
			t.Fatal(err)
		}
		if l.Len() != m.NumParams() || strings.Join(l.Names(), " ") != tc.names {
			t.Errorf("%s: layout %v of %d values for %d parameters", tc.name, l.Names(), l.Len(), m.NumParams())
		}
		w := make([]float64, m.NumParams())
		for i := range w {
			w[i] = float64(i) + 0.5
		}
		ts, err := l.Split(w)
		if err != nil {
			t.Fatal(err)
		}
		back, err := l.Join(ts)
		if err != nil {
			t.Fatal(err)
		}
		for i := range w {
			if back[i] != w[i] {
				t.Fatalf("%s: round trip changed element %d: %v, want %v", tc.name, i, back[i], w[i])
			}
		}
	}
}

// TestSoftmaxLayoutPredicts checks that the named tensors mean what their
// names say: logits = weight·x + bias reproduces the model's prediction.
func TestSoftmaxLayoutPredicts(t *testing.T) {
	const d, c = 3, 4
	m, _ := NewModel("softmax", Multiclass, d, c, 0)
	w := make([]float64, m.NumParams())
	for i := range w {
		w[i] = math.Sin(float64(i + 1))
	}
	l, _ := LayoutOf(m)
	ts, _ := l.Split(w)
	x := []float64{0.3, -1.2, 2}
	z := make([]float64, c)
	for k := range z {
		z[k] = ts["bias"].Data[k]
		for i := range x {
			z[k] += ts["weight"].Data[k*d+i] * x[i]
		}
	}
	softmaxInPlace(z)
	p := make([]float64, c)
	m.Predict(w, x, p)
	for k := range p {
		if math.Abs(p[k]-z[k]) > 1e-12 {
			t.Fatalf("class %d: model %v, named tensors %v", k, p[k], z[k])
		}
	}
}

func TestLayoutJoinErrors(t *testing.T) {
	l, err := NewLayout("logistic", 3, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	good := func() map[string]Tensor {
		ts, _ := l.Split([]float64{1, 2, 3, 4})
		return ts
	}
	for _, tc := range []struct {
		edit func(map[string]Tensor)
		want string
	}{
		{func(ts map[string]Tensor) { delete(ts, "bias") }, `tensor "bias" of the logistic layout is missing`},
		{func(ts map[string]Tensor) { ts["extra"] = Tensor{DType: "F64", Shape: []int{1}, Data: []float64{0}} }, `tensor "extra" is not in the logistic layout`},
		{func(ts map[string]Tensor) {
			ts["weight"] = Tensor{DType: "F64", Shape: []int{3}, Data: []float64{1, 2, 3}}
		}, `tensor "weight" has shape [3]; the layout's is [1 3]`},
		{func(ts map[string]Tensor) { ts["bias"] = Tensor{DType: "I64", Shape: []int{1}, Data: []float64{1}} }, `tensor "bias" has dtype I64`},
		{func(ts map[string]Tensor) { ts["weight"].Data[2] = math.NaN() }, `tensor "weight" holds a NaN or infinite value at element 2`},
		{func(ts map[string]Tensor) { ts["bias"].Data[0] = math.Inf(-1) }, `tensor "bias" holds a NaN or infinite value`},
	} {
		ts := good()
		tc.edit(ts)
		if _, err := l.Join(ts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Join: %v; want %q", err, tc.want)
		}
	}
	if _, err := l.Split(make([]float64, 5)); err == nil {
		t.Error("Split accepted 5 values for a layout of 4")
	}
	for _, bad := range []struct {
		model         string
		d, out, hiddn int
	}{{"logistic", 3, 2, 0}, {"softmax", 3, 1, 0}, {"mlp", 3, 2, 0}, {"tree", 3, 1, 0}, {"linear", 0, 1, 0}} {
		if _, err := NewLayout(bad.model, bad.d, bad.out, bad.hiddn); err == nil {
			t.Errorf("NewLayout%v accepted", bad)
		}
	}
}

func TestManifestRoundTrip(t *testing.T) {
	l, _ := NewLayout("softmax", 2, 3, 0)
	one, two := 1.5, 2.0
	m := &Manifest{Layout: l, Round: 4, Level: "client", Clip: 1, Mean: []float64{0, 1}, Scale: []float64{1, 2}}
	var buf bytes.Buffer
	if err := WriteManifest(&buf, m); err != nil {
		t.Fatal(err)
	}
	got, err := ReadManifest(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if got.Round != 4 || got.Len() != 9 || got.Tensors[0].Shape[0] != 3 {
		t.Fatalf("read back %+v", got)
	}
	ts, _ := got.Split(make([]float64, 9))
	if _, err := got.Join(ts); err != nil {
		t.Fatalf("a read manifest's layout does not join: %v", err)
	}
	for _, tc := range []struct {
		edit func(string) string
		want string
	}{
		{func(s string) string { return strings.Replace(s, `"weight"`, `"w"`, 1) }, `layout tensor 1 is "w"`},
		{func(s string) string { return strings.Replace(s, ManifestFormat, "other/9", 1) }, "manifest format"},
		{func(s string) string { return strings.Replace(s, `"round"`, `"surprise": 1, "round"`, 1) }, "unknown field"},
		{func(s string) string { return strings.Replace(s, `"outputs": 3`, `"outputs": 4`, 1) }, "layout tensor 1"},
	} {
		if _, err := ReadManifest(strings.NewReader(tc.edit(buf.String()))); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadManifest: %v; want %q", err, tc.want)
		}
	}
	m.LabelMean = &one
	buf.Reset()
	WriteManifest(&buf, m)
	if _, err := ReadManifest(&buf); err == nil {
		t.Error("a label mean without a label scale was accepted")
	}
	m.LabelScale = &two
	m.Scale[1] = 0
	buf.Reset()
	WriteManifest(&buf, m)
	if _, err := ReadManifest(&buf); err == nil || !strings.Contains(err.Error(), "feature 2") {
		t.Errorf("a zero scale: %v", err)
	}
}
