package atrest

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
)

// EnvPassphrase names the environment variable [PassphraseFromEnv] reads.
const EnvPassphrase = "FL_SECURE_PASSPHRASE"

// maxPassphraseFile bounds what PassphraseFromFile reads.
const maxPassphraseFile = 64 << 10

const redacted = "[redacted]"

// A Passphrase encrypts and decrypts files at rest. The zero value is no
// passphrase: files are written in plaintext.
//
// A Passphrase never prints: String, GoString, Format and LogValue give
// "[redacted]", and the secret sits behind a pointer, which fmt does not
// follow from inside another value.
type Passphrase struct {
	p *string
}

// IsSet reports whether p holds a passphrase.
func (p Passphrase) IsSet() bool { return p.p != nil }

// String returns "[redacted]".
func (Passphrase) String() string { return redacted }

// GoString returns "[redacted]".
func (Passphrase) GoString() string { return redacted }

// Format writes "[redacted]" whatever the verb and flags.
func (Passphrase) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// LogValue returns "[redacted]" for log/slog.
func (Passphrase) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText returns "[redacted]", so that encoding/json and its kin
// write no secret either.
func (Passphrase) MarshalText() ([]byte, error) { return []byte(redacted), nil }

func newPassphrase(s string) Passphrase { return Passphrase{p: &s} }

// PassphraseFromEnv returns the passphrase in the FL_SECURE_PASSPHRASE
// environment variable, or no passphrase if the variable is not set. A
// variable set to the empty string is an error: encrypting with an empty
// passphrase, or silently not encrypting, would both surprise.
func PassphraseFromEnv() (Passphrase, error) {
	v, ok := os.LookupEnv(EnvPassphrase)
	if !ok {
		return Passphrase{}, nil
	}
	if v == "" {
		return Passphrase{}, fmt.Errorf("atrest: %s is set but empty", EnvPassphrase)
	}
	return newPassphrase(v), nil
}

// PassphraseFromFile returns the first line of the file at path (without
// its line ending) as a passphrase. It refuses a file that its group or
// others may access, and an empty first line.
func PassphraseFromFile(path string) (Passphrase, error) {
	f, err := os.Open(path)
	if err != nil {
		return Passphrase{}, fmt.Errorf("atrest: passphrase file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Passphrase{}, fmt.Errorf("atrest: passphrase file: %w", err)
	}
	// Permission bits mean nothing on Windows.
	if m := fi.Mode().Perm(); runtime.GOOS != "windows" && m&0o077 != 0 {
		return Passphrase{}, fmt.Errorf("atrest: passphrase file %s has mode %04o: only its owner may read it (chmod 600 %s)", path, m, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPassphraseFile))
	defer clear(b)
	if err != nil {
		return Passphrase{}, fmt.Errorf("atrest: passphrase file: %w", err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return Passphrase{}, fmt.Errorf("atrest: passphrase file %s: the first line is empty", path)
	}
	return newPassphrase(string(line)), nil
}
