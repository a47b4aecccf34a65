package main

import (
	"bufio"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/fl-secure/fl-secure/internal/atrest"
)

// readConfig parses a "key = value" file (# starts a comment) into flag
// values: every key is a flag name (underscores for hyphens), a flag given
// on the command line wins, and paths are taken relative to the file.
func readConfig(fs *flag.FlagSet, path string, pathKeys map[string]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return usagef("--config: %v", err)
	}
	defer f.Close()
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	dir := filepath.Dir(path)
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if i := strings.Index(t, "#"); i >= 0 {
			t = strings.TrimSpace(t[:i])
		}
		if t == "" {
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			return usagef("%s:%d: want key = value, got %q", path, line, t)
		}
		k = strings.ReplaceAll(strings.TrimSpace(k), "_", "-")
		v = strings.TrimSpace(v)
		if fs.Lookup(k) == nil {
			return usagef("%s:%d: unknown key %q", path, line, k)
		}
		if set[k] {
			continue
		}
		if pathKeys[k] && v != "" && !filepath.IsAbs(v) {
			v = filepath.Join(dir, v)
		}
		if err := fs.Set(k, v); err != nil {
			return usagef("%s:%d: %s: %v", path, line, k, err)
		}
	}
	return sc.Err()
}

// passphraseFlag registers --passphrase-file.
func passphraseFlag(fs *flag.FlagSet) *string {
	return fs.String("passphrase-file", "", "encrypt private keys and state at rest with the passphrase on this file's first line (mode 0600; default: $"+atrest.EnvPassphrase+")")
}

// passphrase returns the operator's passphrase for private files at rest:
// the first line of file if one is named, else FL_SECURE_PASSPHRASE, else
// none.
func passphrase(file string) (atrest.Passphrase, error) {
	if file != "" {
		return atrest.PassphraseFromFile(file)
	}
	return atrest.PassphraseFromEnv()
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func logger(stderr io.Writer, asJSON bool) *slog.Logger {
	if asJSON {
		return slog.New(slog.NewJSONHandler(stderr, nil))
	}
	return slog.New(slog.NewTextHandler(stderr, nil))
}

// coordinatorRanges reads the coordinator's --feature-ranges: the
