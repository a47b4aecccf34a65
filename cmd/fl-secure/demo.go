package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/fl-secure/fl-secure/fl"
)

// writeDemoData splits an embedded data set over the kits (Dirichlet(0.5)
// label skew, seed 0; regression targets binned at their quartiles) and
// holds out a stratified 25 % test set, then sets the kits' configuration
// for it: the label, model, feature count and feature ranges.
func writeDemoData(out, name string, sites int) error {
	d, err := fl.LoadBuiltin(name)
	if err != nil {
		return err
	}
	tr, te, err := fl.StratifiedSplit(d, 0.25, 0)
	if err != nil {
		return err
	}
	parts, err := fl.PartitionDirichlet(tr, sites, 0.5, 10, 0)
	if err != nil {
		return err
	}
	write := func(path string, d *fl.Dataset) error {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if err := fl.WriteCSV(f, d); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	for i, p := range parts {
		if err := write(filepath.Join(out, fmt.Sprintf("site-%d", i+1), "local.csv"), p); err != nil {
			return err
		}
	}
	if err := write(filepath.Join(out, "coordinator", "test.csv"), te); err != nil {
		return err
	}
	model := demoModel(d)
	coord := []confKey{{"model", model}, {"features", fmt.Sprint(d.Dim())}, {"feature_ranges", name}}
	if d.Task == fl.Multiclass {
		coord = append(coord, confKey{"classes", fmt.Sprint(d.Classes)})
	}
	if err := setConf(filepath.Join(out, "coordinator", "coordinator.conf"), coord); err != nil {
		return err
	}
	for i := range parts {
		path := filepath.Join(out, fmt.Sprintf("site-%d", i+1), "client.conf")
		if err := setConf(path, []confKey{{"label", d.Label}, {"model", model}}); err != nil {
			return err
		}
	}
	return nil
}

// demoModel is the model a demo kit trains on d.
func demoModel(d *fl.Dataset) string {
	switch d.Task {
	case fl.Regression:
		return "linear"
	case fl.Multiclass:
		return "softmax"
	}
	return "logistic"
}

type confKey struct{ key, value string }

// setConf sets keys in a provisioned configuration file: a key's first
// "key = value" line gets the new value, and a key without one is added
// at the end.
func setConf(path string, keys []confKey) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	text := string(b)
	for _, k := range keys {
		if strings.ContainsAny(k.value, "\n#") {
			return fmt.Errorf("%s: value %q for %s", path, k.value, k.key)
		}
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(k.key) + `[ \t]*=.*$`)
		line := k.key + " = " + k.value
		if loc := re.FindStringIndex(text); loc != nil {
			text = text[:loc[0]] + line + text[loc[1]:]
			continue
		}
		if !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		text += line + "\n"
	}
	return os.WriteFile(path, []byte(text), fi.Mode().Perm())
}
