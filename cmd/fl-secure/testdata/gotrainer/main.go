// Command gotrainer is a trainer for fl-secure client --train-cmd that
// needs nothing outside this repository: it follows the contract of
// docs/TRAINER.md the way docs/examples/trainer_numpy.py does, with the
// fl package's models.
//
//	fl-secure client --config client.conf --train-cmd 'gotrainer --data local.csv --label malignant'
//
// At client level it runs one epoch of mini-batch SGD from the global model
// and writes trained − global; at record level it writes the sum over
// every record of its loss gradient at the global model, each clipped to
// the round's L2 norm, with the record count in the file's metadata.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/fl-secure/fl-secure/fl"
)

func main() {
	data := flag.String("data", "", "the hospital's CSV file")
	label := flag.String("label", "", "its label column")
	lr := flag.Float64("learning-rate", 0.1, "local learning rate (client level)")
	flag.Parse()
	if err := run(*data, *label, *lr); err != nil {
		fmt.Fprintln(os.Stderr, "gotrainer:", err)
		os.Exit(1)
	}
}

func run(data, label string, lr float64) error {
	f, err := os.Open(os.Getenv("FL_SECURE_LAYOUT"))
	if err != nil {
		return err
	}
	man, err := fl.ReadManifest(f)
	f.Close()
	if err != nil {
		return err
	}
	g, err := os.Open(os.Getenv("FL_SECURE_MODEL"))
	if err != nil {
		return err
	}
	ts, _, err := fl.ReadSafetensors(g)
	g.Close()
	if err != nil {
		return err
	}
	global, err := man.Join(ts)
	if err != nil {
		return err
	}
	task := map[string]fl.Task{"logistic": fl.Binary, "linear": fl.Regression, "softmax": fl.Multiclass, "mlp": fl.Binary}[man.Model]
	if man.Model == "mlp" && man.Outputs > 1 {
		task = fl.Multiclass
	}
	d, err := fl.LoadCSV(data, label, task)
	if err != nil {
		return err
	}
	// Standardize as the manifest says: the features, and a linear
	// model's label.
	d = (&fl.Standardizer{Mean: man.Mean, Scale: man.Scale}).Apply(d)
	if man.LabelScale != nil {
		d = fl.ScaleLabels(d, *man.LabelMean, *man.LabelScale)
	}
	m, err := fl.NewModel(man.Model, task, man.Features, max(man.Outputs, 2), man.Hidden)
	if err != nil {
		return err
	}
	meta := map[string]string{}
	var update []float64
	switch man.Level {
	case "client":
		update, _, err = fl.LocalSGD(m, global, d, fl.TrainConfig{Epochs: 1, BatchSize: 16, LearningRate: lr, Seed: uint64(man.Round)})
	case "record":
		if want, _ := strconv.Atoi(os.Getenv("FL_SECURE_RECORDS")); want != d.Rows() {
			return fmt.Errorf("told to use %d records; %s has %d", want, data, d.Rows())
		}
		// Every record once (sampling rate 1), each gradient clipped.
		update, _, err = fl.ClippedGradientSum(m, global, d, 1, man.Clip, nil)
		meta["records"] = strconv.Itoa(d.Rows())
	default:
		return fmt.Errorf("unknown level %q", man.Level)
	}
	if err != nil {
		return err
	}
	out, err := man.Split(update)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := fl.WriteSafetensors(&buf, out, meta); err != nil {
		return err
	}
	fmt.Printf("round %d: %s update over %d records\n", man.Round, man.Level, d.Rows())
	return os.WriteFile(os.Getenv("FL_SECURE_UPDATE"), buf.Bytes(), 0o600)
}
