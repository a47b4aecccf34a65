package local

import (
	"errors"
	"fmt"
	"math"

	"github.com/fl-secure/fl-secure/fl"
)

// Data names a data set and how it is split among hospitals.
type Data struct {
	// Name is a built-in data set (fl.Builtin: wdbc, diabetes) or the path
	// of a CSV file.
	Name string
	// Label is the label column of a CSV file.
	Label string
	// Task is the task of a CSV file's label.
	Task fl.Task
	// Sites is the number of hospitals.
	Sites int
	// Alpha is the Dirichlet label-skew parameter α (0: IID).
	Alpha float64
	// TestFraction is the stratified share held out for testing.
	TestFraction float64
	// Seed determines the split.
	Seed uint64
}

// ErrUsage marks an error in a configuration as given (a value out of
// range, a missing setting), as opposed to a failure while running.
var ErrUsage = errors.New("local: invalid configuration")

// usageError is an ErrUsage whose text names the problem.
type usageError string

func (e usageError) Error() string        { return string(e) }
func (e usageError) Is(target error) bool { return target == ErrUsage }

func usagef(format string, a ...any) error { return usageError(fmt.Sprintf(format, a...)) }

// MinSiteRows is the fewest rows a simulated site holds.
const MinSiteRows = 10

// Split is a data set split for a simulation.
type Split struct {
	All   *fl.Dataset   // the whole data set
	Train *fl.Dataset   // the union of the hospitals' data
	Test  *fl.Dataset   // held by the coordinator
	Sites []*fl.Dataset // one per hospital
}

// Load loads d's data set and splits it: a stratified test set, and the
// rest among d.Sites hospitals (IID, or with Dirichlet(α) label skew).
func Load(d Data) (*Split, error) {
	if d.Sites < 1 || d.Sites > 1000 {
		return nil, usagef("local: %d sites: want 1 to 1000", d.Sites)
	}
	if d.Alpha < 0 || math.IsNaN(d.Alpha) || math.IsInf(d.Alpha, 0) {
		return nil, usagef("local: Dirichlet α %v: want ≥ 0", d.Alpha)
	}
	if !(d.TestFraction > 0 && d.TestFraction < 1) {
		return nil, usagef("local: test fraction %v: want a fraction in (0, 1)", d.TestFraction)
	}
	var all *fl.Dataset
	var err error
	if _, ok := fl.Builtin[d.Name]; ok {
		all, err = fl.LoadBuiltin(d.Name)
	} else {
		if d.Label == "" {
			return nil, usagef("local: %q is not a built-in data set; a CSV file needs its label column named", d.Name)
		}
		all, err = fl.LoadCSV(d.Name, d.Label, d.Task)
	}
	if err != nil {
		return nil, err
	}
	train, test, err := fl.StratifiedSplit(all, d.TestFraction, d.Seed)
	if err != nil {
		return nil, err
	}
	if d.Sites*MinSiteRows > train.Rows() {
		return nil, usagef("local: %d sites (--sites): each needs at least %d rows, and the %d rows of %s leave %d to deal among the sites once %d (%.0f%%) are held out for testing: at most %d sites",
			d.Sites, MinSiteRows, all.Rows(), all.Name, train.Rows(), test.Rows(), 100*d.TestFraction, train.Rows()/MinSiteRows)
	}
	var sites []*fl.Dataset
	if d.Alpha == 0 {
		sites, err = fl.PartitionIID(train, d.Sites, d.Seed)
	} else {
		sites, err = fl.PartitionDirichlet(train, d.Sites, d.Alpha, MinSiteRows, d.Seed)
	}
	if err != nil {
		return nil, err
	}
	return &Split{All: all, Train: train, Test: test, Sites: sites}, nil
}

// DefaultModel returns the model a task trains by default.
func DefaultModel(t fl.Task) string {
	switch t {
	case fl.Multiclass:
		return "softmax"
	case fl.Regression:
		return "linear"
	}
	return "logistic"
}

// Baseline trains without federation or privacy on train (standardized
// with its own statistics, the label too for regression) and evaluates on
// test: the reference rows of the simulator's table (centralized, or one
// hospital alone). RMSE is in the label's units.
func Baseline(modelName string, hidden int, train, test *fl.Dataset, seed uint64) (fl.Metrics, error) {
	dim := train.Dim()
	if test.Dim() != dim || test.Task != train.Task {
		return fl.Metrics{}, fmt.Errorf("local: test data has %d features, training data %d", test.Dim(), dim)
	}
	lt := fl.WithLabel(train)
	st, err := fl.StatsFromVector(fl.LocalStats(lt).Vector(), lt.Dim())
	if err != nil {
		return fl.Metrics{}, err
	}
	std, err := fl.NewStandardizer(st)
	if err != nil {
		return fl.Metrics{}, err
	}
	ym, ys := 0.0, 1.0
	if train.Task == fl.Regression {
		ym, ys = std.Mean[dim], std.Scale[dim]
		std.Mean, std.Scale = std.Mean[:dim], std.Scale[:dim]
	}
	tr, te := fl.ScaleLabels(std.Apply(train), ym, ys), fl.ScaleLabels(std.Apply(test), ym, ys)
	m, err := fl.NewModel(modelName, train.Task, dim, max(train.Classes, test.Classes), hidden)
	if err != nil {
		return fl.Metrics{}, err
	}
	w := m.Init(seed)
	up, _, err := fl.LocalSGD(m, w, tr, fl.TrainConfig{Epochs: 100, BatchSize: 16, LearningRate: 0.05, Seed: seed})
	if err != nil {
		return fl.Metrics{}, err
	}
	for i := range w {
		w[i] += up[i]
	}
	r, err := fl.Evaluate(m, w, te)
	r.RMSE *= ys
	return r, err
}
