package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/fl-secure/fl-secure/fl"
)

// writeDemoData splits an embedded data set over the kits (Dirichlet(0.5)
// label skew, seed 0) and holds out a stratified 25 % test set.
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
	return write(filepath.Join(out, "coordinator", "test.csv"), te)
}
