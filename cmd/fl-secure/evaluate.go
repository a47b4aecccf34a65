package main

import (
	"fmt"
	"io"

	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/protocol"
)

func evaluateCmd(args []string, stdout, stderr io.Writer) int {
	fs, parse := newFlags("evaluate", `Usage: fl-secure evaluate --state DIR --data test.csv --label L [--model logistic|softmax|linear|mlp]

Evaluates the newest checkpoint of a coordinator's state directory on a
labelled CSV file, standardized with the federation's statistics.
`, stderr)
	state := fs.String("state", "", "the coordinator's state directory")
	data := fs.String("data", "", "labelled CSV")
	label := fs.String("label", "", "label column")
	model := fs.String("model", "logistic", "the federation's model: logistic, softmax, linear or mlp")
	hidden := fs.Int("hidden", 16, "hidden width of an mlp model")
	classes := fs.Int("classes", 0, "classes of a softmax or mlp model, if the test set lacks the highest (default: from its labels)")
	asJSON := fs.Bool("json", false, "print JSON")
	if help, err := parse(args, "state", "data", "label"); help || err != nil {
		if err != nil {
			return fail(stderr, err, `run "fl-secure evaluate -h"`)
		}
		return 0
	}
	d, err := loadData(*data, *label, *model)
	if err != nil {
		return fail(stderr, err, "")
	}
	if *classes > d.Classes && d.Task == fl.Multiclass {
		d.Classes = *classes
	}
	m, round, err := protocol.EvaluateState(*state, *model, *hidden, d)
	if err != nil {
		return fail(stderr, err, "")
	}
	if *asJSON {
		return printJSON(stdout, stderr, map[string]any{"round": round, "test": m})
	}
	switch d.Task {
	case fl.Regression:
		fmt.Fprintf(stdout, "round %d model on %d rows: RMSE %.4g, R² %.3f\n", round, d.Rows(), m.RMSE, m.R2)
	case fl.Multiclass:
		fmt.Fprintf(stdout, "round %d model on %d rows: accuracy %.3f, log loss %.3f\n", round, d.Rows(), m.Accuracy, m.LogLoss)
	default:
		fmt.Fprintf(stdout, "round %d model on %d rows: accuracy %.3f, AUC %.3f, log loss %.3f\n", round, d.Rows(), m.Accuracy, m.AUC, m.LogLoss)
	}
	return 0
}
