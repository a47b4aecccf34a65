package fl

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// A Model is a differentiable predictor whose parameters are one flat
// vector, so that an update is just a vector to clip, noise and aggregate.
type Model interface {
	// Name is "logistic", "softmax", "linear" or "mlp".
	Name() string
	// NumParams is the length of the parameter vector.
	NumParams() int
	// Init returns initial parameters (deterministic for a seed).
	Init(seed uint64) []float64
	// Grad adds the gradient of one example's loss at w to g and returns
	// the loss: logistic and softmax use cross-entropy, linear squared
	// error ½(ŷ − y)², the MLP the loss of its output layer.
	Grad(w, x []float64, y float64, g []float64) float64
	// Predict writes the prediction for x to out: class probabilities
	// (Outputs() of them), or the regression value.
	Predict(w, x []float64, out []float64)
	// Outputs is the length of a prediction.
	Outputs() int
}

// NewModel returns the named model for inputs of dimension d: "logistic"
// (binary), "softmax" (classes ≥ 2), "linear" (regression), or "mlp" with
// hidden units (tanh), whose output layer follows the task.
func NewModel(name string, task Task, d, classes, hidden int) (Model, error) {
	if d < 1 {
		return nil, fmt.Errorf("fl: input dimension %d", d)
	}
	switch name {
	case "logistic":
		if task != Binary {
			return nil, fmt.Errorf("fl: logistic regression needs a binary task, not %s", task)
		}
		return logistic{d}, nil
	case "softmax":
		if task == Regression || classes < 2 {
			return nil, fmt.Errorf("fl: softmax regression needs classes, not %s", task)
		}
		return softmax{d, classes}, nil
	case "linear":
		if task != Regression {
			return nil, fmt.Errorf("fl: linear regression needs a regression task, not %s", task)
		}
		return linear{d}, nil
	case "mlp":
		if hidden < 1 || hidden > 4096 {
			return nil, fmt.Errorf("fl: MLP hidden width %d outside [1, 4096]", hidden)
		}
		out := 1
		if task == Multiclass {
			out = classes
		}
		return mlp{d: d, h: hidden, o: out, task: task}, nil
	}
	return nil, fmt.Errorf("fl: unknown model %q (logistic, softmax, linear, mlp)", name)
}

func sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}

// logLoss1 returns −[y log p + (1−y) log(1−p)] for p = σ(z), stably.
func logLoss1(z, y float64) float64 {
	// log(1 + e^z) − y·z
	var sp float64
	if z > 0 {
		sp = z + math.Log1p(math.Exp(-z))
	} else {
		sp = math.Log1p(math.Exp(z))
	}
	return sp - y*z
}

func dot(w, x []float64) float64 {
	var s float64
	for i, v := range x {
		s += w[i] * v
	}
	return s
}

// logistic: w = [weights…, bias].
type logistic struct{ d int }

func (m logistic) Name() string                { return "logistic" }
func (m logistic) NumParams() int              { return m.d + 1 }
func (m logistic) Outputs() int                { return 1 }
func (m logistic) Init(uint64) []float64       { return make([]float64, m.d+1) }
func (m logistic) Predict(w, x, out []float64) { out[0] = sigmoid(dot(w, x) + w[m.d]) }
func (m logistic) Grad(w, x []float64, y float64, g []float64) float64 {
	z := dot(w, x) + w[m.d]
	r := sigmoid(z) - y
	for i, v := range x {
		g[i] += r * v
	}
	g[m.d] += r
	return logLoss1(z, y)
}

// linear: w = [weights…, bias], loss ½(ŷ − y)².
type linear struct{ d int }

func (m linear) Name() string                { return "linear" }
func (m linear) NumParams() int              { return m.d + 1 }
func (m linear) Outputs() int                { return 1 }
func (m linear) Init(uint64) []float64       { return make([]float64, m.d+1) }
func (m linear) Predict(w, x, out []float64) { out[0] = dot(w, x) + w[m.d] }
func (m linear) Grad(w, x []float64, y float64, g []float64) float64 {
	r := dot(w, x) + w[m.d] - y
	for i, v := range x {
		g[i] += r * v
	}
	g[m.d] += r
	return r * r / 2
}

// softmax: w = c rows of [weights…, bias].
type softmax struct{ d, c int }

func (m softmax) Name() string          { return "softmax" }
func (m softmax) NumParams() int        { return m.c * (m.d + 1) }
func (m softmax) Outputs() int          { return m.c }
func (m softmax) Init(uint64) []float64 { return make([]float64, m.c*(m.d+1)) }

func (m softmax) logits(w, x, z []float64) {
	for k := range z {
		row := w[k*(m.d+1) : (k+1)*(m.d+1)]
		z[k] = dot(row, x) + row[m.d]
	}
}

func softmaxInPlace(z []float64) {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = math.Max(mx, v)
	}
	var s float64
	for k, v := range z {
		z[k] = math.Exp(v - mx)
		s += z[k]
	}
	for k := range z {
		z[k] /= s
	}
}

// crossEntropy returns −log softmax(z)[y] and overwrites z with the
// gradient of that loss with respect to z: softmax(z) − e_y.
func crossEntropy(z []float64, y int) float64 {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = math.Max(mx, v)
	}
	var s float64
	for _, v := range z {
		s += math.Exp(v - mx)
	}
	loss := mx + math.Log(s) - z[y]
	softmaxInPlace(z)
	z[y] -= 1
	return loss
}

func (m softmax) Predict(w, x, out []float64) {
	m.logits(w, x, out)
	softmaxInPlace(out)
}

func (m softmax) Grad(w, x []float64, y float64, g []float64) float64 {
	p := make([]float64, m.c)
	m.logits(w, x, p)
	loss := crossEntropy(p, int(y))
	for k := range p {
		r := p[k]
		row := g[k*(m.d+1) : (k+1)*(m.d+1)]
		for i, v := range x {
			row[i] += r * v
		}
		row[m.d] += r
	}
	return loss
}

// mlp: one tanh hidden layer. Layout: W1 (h×d), b1 (h), W2 (o×h), b2 (o).
type mlp struct {
	d, h, o int
	task    Task
}

func (m mlp) Name() string   { return "mlp" }
func (m mlp) NumParams() int { return m.h*m.d + m.h + m.o*m.h + m.o }
func (m mlp) Outputs() int   { return m.o }

// Init draws weights uniformly in ±√(6/(fan_in+fan_out)) (Glorot and
// Bengio, AISTATS 2010); biases start at 0.
func (m mlp) Init(seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 0x3a1))
	w := make([]float64, m.NumParams())
	a1 := math.Sqrt(6 / float64(m.d+m.h))
	for i := 0; i < m.h*m.d; i++ {
		w[i] = (2*rng.Float64() - 1) * a1
	}
	a2 := math.Sqrt(6 / float64(m.h+m.o))
	off := m.h*m.d + m.h
	for i := 0; i < m.o*m.h; i++ {
		w[off+i] = (2*rng.Float64() - 1) * a2
	}
	return w
}

func (m mlp) forward(w, x, hid, z []float64) {
	W1, b1 := w[:m.h*m.d], w[m.h*m.d:m.h*m.d+m.h]
	W2 := w[m.h*m.d+m.h : m.h*m.d+m.h+m.o*m.h]
	b2 := w[m.h*m.d+m.h+m.o*m.h:]
	for j := 0; j < m.h; j++ {
		hid[j] = math.Tanh(dot(W1[j*m.d:(j+1)*m.d], x) + b1[j])
	}
	for k := 0; k < m.o; k++ {
		z[k] = dot(W2[k*m.h:(k+1)*m.h], hid) + b2[k]
	}
}

func (m mlp) Predict(w, x, out []float64) {
	hid := make([]float64, m.h)
	m.forward(w, x, hid, out)
	switch m.task {
	case Binary:
		out[0] = sigmoid(out[0])
	case Multiclass:
		softmaxInPlace(out)
	}
}

func (m mlp) Grad(w, x []float64, y float64, g []float64) float64 {
	hid := make([]float64, m.h)
	z := make([]float64, m.o)
	m.forward(w, x, hid, z)
	dz := make([]float64, m.o)
	var loss float64
	switch m.task {
	case Binary:
		loss = logLoss1(z[0], y)
		dz[0] = sigmoid(z[0]) - y
	case Multiclass:
		copy(dz, z)
		loss = crossEntropy(dz, int(y))
	default:
		r := z[0] - y
		loss = r * r / 2
		dz[0] = r
	}
	o1 := m.h * m.d
	o2 := o1 + m.h
	o3 := o2 + m.o*m.h
	W2 := w[o2:o3]
	dh := make([]float64, m.h)
	for k := 0; k < m.o; k++ {
		for j := 0; j < m.h; j++ {
			g[o2+k*m.h+j] += dz[k] * hid[j]
			dh[j] += dz[k] * W2[k*m.h+j]
		}
		g[o3+k] += dz[k]
	}
	for j := 0; j < m.h; j++ {
		da := dh[j] * (1 - hid[j]*hid[j])
		for i, v := range x {
			g[j*m.d+i] += da * v
		}
		g[o1+j] += da
	}
	return loss
}
