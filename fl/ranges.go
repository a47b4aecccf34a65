package fl

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// A Range is the public bound of one feature (or a regression label): a
// constant the federation agrees on before it sees any data, such as a
// clinical plausibility range. Values outside it are clipped into it for
// the statistics release. Mean and Scale, if Scale is positive, are a
// public standardization used when no statistics are released.
type Range struct {
	Name        string
	Lo, Hi      float64
	Mean, Scale float64 // Scale 0: none given
}

// Mid returns the midpoint (Lo+Hi)/2.
func (r Range) Mid() float64 { return r.Lo/2 + r.Hi/2 }

// HalfWidth returns (Hi−Lo)/2.
func (r Range) HalfWidth() float64 { return r.Hi/2 - r.Lo/2 }

// Public returns the public standardization of the range: its Mean and
// Scale when given, else its midpoint and half-width.
func (r Range) Public() (mean, scale float64) {
	if r.Scale > 0 {
		return r.Mean, r.Scale
	}
	return r.Mid(), r.HalfWidth()
}

// Ranges is a feature-ranges file: one Range per named column.
type Ranges struct {
	byName map[string]Range
	names  []string // in file order
}

// Names returns the columns the file bounds, in file order.
func (rs *Ranges) Names() []string { return append([]string(nil), rs.names...) }

// For returns the ranges of the given columns, in their order: every
// column must be in the file, and the file may name no other.
func (rs *Ranges) For(columns []string) ([]Range, error) {
	out := make([]Range, len(columns))
	want := map[string]bool{}
	for i, c := range columns {
		r, ok := rs.byName[c]
		if !ok {
			return nil, fmt.Errorf("fl: feature ranges: no range for column %q", c)
		}
		out[i], want[c] = r, true
	}
	for _, n := range rs.names {
		if !want[n] {
			return nil, fmt.Errorf("fl: feature ranges: %q is not a column of the data (have %s)", n, strings.Join(columns, ", "))
		}
	}
	return out, nil
}

// RangesFor returns the ranges of d's features and, for regression, of
// its label last, in the order of Dataset.Features (WithLabel's order).
func (rs *Ranges) RangesFor(d *Dataset) ([]Range, error) {
	return rs.For(WithLabel(d).Features)
}

// rangesHeader is the optional first line of a feature-ranges file.
var rangesHeader = []string{"name", "lo", "hi", "mean", "scale"}

// ReadRanges parses a feature-ranges file: CSV, one line per column
//
//	name,lo,hi[,mean,scale]
//
// with lo < hi finite, and, if given, mean in [lo, hi] and scale > 0
// finite. Blank lines and lines starting with # are skipped; a first line
// "name,lo,hi" or "name,lo,hi,mean,scale" is a header. A name appears
// once. Errors name the line.
func ReadRanges(r io.Reader) (*Ranges, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	rs := &Ranges{byName: map[string]Range{}}
	first := true
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("fl: feature ranges line %d: %v", pe.Line, pe.Err)
			}
			return nil, fmt.Errorf("fl: feature ranges: %w", err)
		}
		line, _ := cr.FieldPos(0)
		for i := range rec {
			rec[i] = strings.TrimSpace(rec[i])
		}
		if first {
			first = false
			if rec[0] == "name" {
				if len(rec) != 3 && len(rec) != 5 || !equalFold(rec, rangesHeader[:len(rec)]) {
					return nil, fmt.Errorf("fl: feature ranges line %d: header %q: want name,lo,hi or name,lo,hi,mean,scale", line, strings.Join(rec, ","))
				}
				continue
			}
		}
		rg, err := parseRange(rec)
		if err != nil {
			return nil, fmt.Errorf("fl: feature ranges line %d: %v", line, err)
		}
		if _, dup := rs.byName[rg.Name]; dup {
			return nil, fmt.Errorf("fl: feature ranges line %d: %q appears twice", line, rg.Name)
		}
		rs.byName[rg.Name] = rg
		rs.names = append(rs.names, rg.Name)
	}
	if len(rs.names) == 0 {
		return nil, errors.New("fl: feature ranges: no ranges in the file")
	}
	return rs, nil
}

func equalFold(a, b []string) bool {
	for i := range a {
		if !strings.EqualFold(a[i], b[i]) {
			return false
		}
	}
	return true
}

func parseRange(rec []string) (Range, error) {
	if len(rec) != 3 && len(rec) != 5 {
		return Range{}, fmt.Errorf("%d fields: want name,lo,hi or name,lo,hi,mean,scale", len(rec))
	}
	if rec[0] == "" {
		return Range{}, errors.New("empty name")
	}
	r := Range{Name: rec[0]}
	num := func(what, s string) (float64, error) {
		x, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return 0, fmt.Errorf("%s of %q is %q, not a finite number", what, r.Name, s)
		}
		return x, nil
	}
	var err error
	if r.Lo, err = num("lo", rec[1]); err != nil {
		return Range{}, err
	}
	if r.Hi, err = num("hi", rec[2]); err != nil {
		return Range{}, err
	}
	if !(r.Lo < r.Hi) || math.IsInf(r.Hi/2-r.Lo/2, 0) {
		return Range{}, fmt.Errorf("range of %q is [%v, %v]: want lo < hi", r.Name, r.Lo, r.Hi)
	}
	if len(rec) == 5 {
		if r.Mean, err = num("mean", rec[3]); err != nil {
			return Range{}, err
		}
		if r.Scale, err = num("scale", rec[4]); err != nil {
			return Range{}, err
		}
		if r.Mean < r.Lo || r.Mean > r.Hi {
			return Range{}, fmt.Errorf("mean %v of %q is outside its range [%v, %v]", r.Mean, r.Name, r.Lo, r.Hi)
		}
		if !(r.Scale > 0) {
			return Range{}, fmt.Errorf("scale %v of %q: want a positive number", r.Scale, r.Name)
		}
	}
	return r, nil
}

// LoadRanges reads a feature-ranges file (see ReadRanges).
func LoadRanges(path string) (*Ranges, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("fl: %w", err)
	}
	defer f.Close()
	rs, err := ReadRanges(f)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return rs, nil
}

// BuiltinRanges returns the embedded public bounds of a built-in data set
// (datasets/<name>-ranges.csv; provenance in datasets/README.md).
func BuiltinRanges(name string) (*Ranges, error) {
	if _, ok := Builtin[name]; !ok {
		return nil, fmt.Errorf("fl: no built-in data set %q (have wdbc, diabetes)", name)
	}
	f, err := embedded.Open("datasets/" + name + "-ranges.csv")
	if err != nil {
		return nil, fmt.Errorf("fl: internal error: %w", err)
	}
	defer f.Close()
	return ReadRanges(f)
}
