package atrest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// defaultWorkFactor is the production work factor, read before TestMain
// lowers it for speed.
var defaultWorkFactor = scryptWorkFactor

func TestMain(m *testing.M) {
	scryptWorkFactor, scryptMaxWorkFactor = 4, 10
	os.Exit(m.Run())
}

const (
	testSecret = "correct horse battery staple"
	katSecret  = "fl-secure test passphrase"
	katPlain   = "fl-secure at-rest known answer\n"
)

func pass(s string) Passphrase { return newPassphrase(s) }

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16+1) // two STREAM chunks
	for _, tc := range []struct {
		name string
		pass Passphrase
		data []byte
	}{
		{"plain", Passphrase{}, []byte("-----BEGIN PRIVATE KEY-----\n")},
		{"plain/empty", Passphrase{}, nil},
		{"encrypted", pass(testSecret), []byte("-----BEGIN PRIVATE KEY-----\n")},
		{"encrypted/empty", pass(testSecret), nil},
		{"encrypted/two-chunks", pass(testSecret), big},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			if err := WriteFile(path, tc.data, 0o600, tc.pass); err != nil {
				t.Fatal(err)
			}
			raw, _ := os.ReadFile(path)
			enc, err := IsEncrypted(path)
			if err != nil || enc != tc.pass.IsSet() {
				t.Errorf("IsEncrypted = %v, %v", enc, err)
			}
			if tc.pass.IsSet() {
				if !bytes.HasPrefix(raw, []byte("age-encryption.org/v1\n-> scrypt ")) {
					t.Errorf("file starts %q, want an age header with an scrypt stanza", raw[:min(len(raw), 40)])
				}
				if len(tc.data) > 0 && bytes.Contains(raw, tc.data[:min(len(tc.data), 16)]) {
					t.Error("the plaintext is in the encrypted file")
				}
			} else if !bytes.Equal(raw, tc.data) {
				t.Error("the plaintext file differs from the data")
			}
			got, err := ReadFile(path, tc.pass)
			if err != nil || !bytes.Equal(got, tc.data) {
				t.Fatalf("ReadFile: %d bytes, %v; want %d bytes", len(got), err, len(tc.data))
			}
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v", fi.Mode().Perm())
			}
			// Overwrite, with another mode.
			if err := WriteFile(path, []byte("new"), 0o644, tc.pass); err != nil {
				t.Fatal(err)
			}
			if got, err := ReadFile(path, tc.pass); err != nil || string(got) != "new" {
				t.Errorf("after overwrite: %q, %v", got, err)
			}
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
				t.Errorf("mode after overwrite %v", fi.Mode().Perm())
			}
			assertOnlyFiles(t, filepath.Dir(path), "key.pem")
		})
	}
}

// assertOnlyFiles fails if dir holds anything but names (a temporary file
// left behind, say).
func assertOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	es, _ := os.ReadDir(dir)
	var got []string
	for _, e := range es {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

// The production work factor is age's default, 2^18.
func TestDefaultWorkFactor(t *testing.T) {
	if testing.Short() {
		t.Skip("one scrypt at 2^18")
	}
	if defaultWorkFactor != 18 {
		t.Fatalf("work factor 2^%d, want 2^18", defaultWorkFactor)
	}
	old := scryptWorkFactor
	scryptWorkFactor = defaultWorkFactor
	defer func() { scryptWorkFactor = old }()
	path := filepath.Join(t.TempDir(), "f")
	if err := WriteFile(path, []byte("x"), 0o600, pass(testSecret)); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	line := strings.Split(string(raw), "\n")[1]
	if f := strings.Fields(line); len(f) != 4 || f[1] != "scrypt" || f[3] != "18" {
		t.Errorf("stanza %q, want scrypt with work factor 18", line)
	}
}

// Files made by age itself (binary and armored) are read; a file
// encrypted to an X25519 key is refused by name.
func TestKnownAnswer(t *testing.T) {
	for _, name := range []string{"scrypt.age", "scrypt-armored.age", "plain.txt"} {
		t.Run(name, func(t *testing.T) {
			got, err := ReadFile(filepath.Join("testdata", name), pass(katSecret))
			if err != nil || string(got) != katPlain {
				t.Fatalf("%q, %v", got, err)
			}
		})
	}
	t.Run("x25519.age", func(t *testing.T) {
		_, err := ReadFile(filepath.Join("testdata", "x25519.age"), pass(katSecret))
		if !errors.Is(err, ErrWrongPassphrase) || !strings.Contains(err.Error(), "not with a passphrase") {
			t.Errorf("%v", err)
		}
	})
}

func TestWrongPassphrase(t *testing.T) {
	for _, name := range []string{"scrypt.age", "scrypt-armored.age"} {
		path := filepath.Join("testdata", name)
		got, err := ReadFile(path, pass("not the passphrase"))
		if got != nil || !errors.Is(err, ErrWrongPassphrase) {
			t.Fatalf("%s: %q, %v", name, got, err)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "atrest: "+path+": wrong passphrase") || strings.Contains(msg, "not the passphrase") {
			t.Errorf("%s: message %q", name, msg)
		}
	}
}

func TestEncryptedWithoutPassphrase(t *testing.T) {
	path := filepath.Join("testdata", "scrypt.age")
	got, err := ReadFile(path, Passphrase{})
	if got != nil || !errors.Is(err, ErrNoPassphrase) {
		t.Fatalf("%q, %v", got, err)
	}
	want := "atrest: testdata/scrypt.age: encrypted with a passphrase, and none was given: set FL_SECURE_PASSPHRASE or pass --passphrase-file FILE"
	if err.Error() != want {
		t.Errorf("message\n%q, want\n%q", err, want)
	}
}

// A plaintext file is read with a passphrase set (a file from before the
// passphrase); writing it again encrypts it.
func TestPlaintextMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.pem")
	os.WriteFile(path, []byte("old plaintext"), 0o600)
	p := pass(testSecret)
	got, err := ReadFile(path, p)
	if err != nil || string(got) != "old plaintext" {
		t.Fatalf("%q, %v", got, err)
	}
	if err := WriteFile(path, got, 0o600, p); err != nil {
		t.Fatal(err)
	}
	if enc, _ := IsEncrypted(path); !enc {
		t.Error("not encrypted after the rewrite")
	}
	if got, err := ReadFile(path, p); err != nil || string(got) != "old plaintext" {
		t.Errorf("%q, %v", got, err)
	}
}

// A crash after the temporary file is written and synced but before the
// rename leaves the old file in place; the temporary file is never read,
// and the next write succeeds beside it.
func TestCrashBeforeRename(t *testing.T) {
	for _, p := range []Passphrase{{}, pass(testSecret)} {
		dir := t.TempDir()
		path := filepath.Join(dir, "he-party.bin")
		if err := WriteFile(path, []byte("old state"), 0o600, p); err != nil {
			t.Fatal(err)
		}
		tmp, err := writeTemp(path, []byte("new state"), 0o600, p) // then the power goes
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(tmp) != dir || !strings.HasPrefix(filepath.Base(tmp), ".he-party.bin.tmp-") {
			t.Errorf("temporary file %s", tmp)
		}
		if got, err := ReadFile(path, p); err != nil || string(got) != "old state" {
			t.Fatalf("after the crash: %q, %v", got, err)
		}
		if err := WriteFile(path, []byte("newer state"), 0o600, p); err != nil {
			t.Fatal(err)
		}
		if got, err := ReadFile(path, p); err != nil || string(got) != "newer state" {
			t.Fatalf("after the next write: %q, %v", got, err)
		}
		assertOnlyFiles(t, dir, filepath.Base(tmp), "he-party.bin")
	}
}

// A write that fails removes its temporary file and leaves the old
// content alone.
func TestWriteFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	// The destination is a non-empty directory: the rename fails.
	path := filepath.Join(dir, "state")
	os.MkdirAll(filepath.Join(path, "x"), 0o700)
	for _, p := range []Passphrase{{}, pass(testSecret)} {
		if err := WriteFile(path, []byte("data"), 0o600, p); err == nil {
			t.Fatal("wrote over a directory")
		}
		assertOnlyFiles(t, dir, "state")
	}
	// No such directory: nothing is created.
	if err := WriteFile(filepath.Join(dir, "missing", "f"), nil, 0o600, Passphrase{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing", "f"), Passphrase{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%v", err)
	}
	if err := SyncDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("synced a missing directory")
	}
}

// Every truncation, every extension and every flipped bit of an encrypted
// file is an error, never a panic, and never the plaintext nor any other
// content passed off as decrypted. Flips inside the "age-encryption.org/"
// magic make the file read as plaintext (a file written before a
// passphrase was set): its own bytes come back, not the secret.
func TestDamagedEncryptedFile(t *testing.T) {
	p := pass(testSecret)
	path := filepath.Join(t.TempDir(), "f")
	secret := []byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n")
	if err := WriteFile(path, secret, 0o600, p); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	try := func(what string, b []byte) {
		t.Helper()
		os.WriteFile(path, b, 0o600)
		got, err := ReadFile(path, p)
		switch {
		case err == nil && !encrypted(b) && bytes.Equal(got, b):
			// Read as plaintext: the damage hit the magic.
		case err == nil:
			t.Fatalf("%s: read %q", what, got)
		case got != nil:
			t.Fatalf("%s: data with an error", what)
		case strings.Contains(err.Error(), testSecret):
			t.Fatalf("%s: the passphrase is in %q", what, err)
		}
	}
	for n := range len(good) {
		try(fmt.Sprintf("truncated to %d", n), good[:n:n])
	}
	try("one byte more", append(good[:len(good):len(good)], 0))
	try("a chunk more", append(good[:len(good):len(good)], make([]byte, 64<<10+16)...))
	for i := range good {
		for bit := range 8 {
			b := bytes.Clone(good)
			b[i] ^= 1 << bit
			try(fmt.Sprintf("bit %d of byte %d", bit, i), b)
		}
	}
}

func TestPassphraseFromFile(t *testing.T) {
	dir := t.TempDir()
	write := func(content string, mode os.FileMode) string {
		f, _ := os.CreateTemp(dir, "p")
		f.WriteString(content)
		f.Chmod(mode)
		f.Close()
		return f.Name()
	}
	for content, want := range map[string]string{
		"secret\n":              "secret",
		"secret":                "secret",
		"secret\r\n":            "secret",
		"secret\nsecond line\n": "secret",
		" spaced secret \n":     " spaced secret ",
	} {
		p, err := PassphraseFromFile(write(content, 0o600))
		if err != nil || !p.IsSet() || *p.p != want {
			t.Errorf("%q: %v", content, err)
		}
	}
	for _, tc := range []struct {
		content string
		mode    os.FileMode
		want    string
	}{
		{"", 0o600, "the first line is empty"},
		{"\nsecret\n", 0o600, "the first line is empty"},
		{"secret\n", 0o644, "has mode 0644: only its owner may read it (chmod 600 "},
		{"secret\n", 0o640, "has mode 0640"},
		{"secret\n", 0o604, "has mode 0604"},
	} {
		path := write(tc.content, tc.mode)
		p, err := PassphraseFromFile(path)
		if err == nil || p.IsSet() || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%q mode %04o: %v", tc.content, tc.mode, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the passphrase is in the error %q", err)
		}
	}
	if _, err := PassphraseFromFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestPassphraseFromEnv(t *testing.T) {
	t.Setenv(EnvPassphrase, testSecret)
	p, err := PassphraseFromEnv()
	if err != nil || !p.IsSet() || *p.p != testSecret {
		t.Fatalf("set: %v", err)
	}
	t.Setenv(EnvPassphrase, "")
	if p, err := PassphraseFromEnv(); err == nil || p.IsSet() || !strings.Contains(err.Error(), "set but empty") {
		t.Errorf("empty: %v", err)
	}
	os.Unsetenv(EnvPassphrase)
	if p, err := PassphraseFromEnv(); err != nil || p.IsSet() {
		t.Errorf("unset: %v", err)
	}
}

// A Passphrase prints as "[redacted]" through fmt, slog and encoding/json,
// alone, in an exported field and in an unexported one.
func TestPassphraseNeverPrinted(t *testing.T) {
	p := pass(testSecret)
	type config struct {
		Name       string
		Passphrase Passphrase
	}
	type holder struct {
		cfg  config // unexported: fmt cannot call methods on it
		pass Passphrase
	}
	h := &holder{cfg: config{"site", p}, pass: p}
	var out bytes.Buffer
	for _, v := range []any{p, &p, config{"site", p}, &config{"site", p}, h, *h, []Passphrase{p}, map[string]Passphrase{"k": p}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		fmt.Fprint(&out, v)
		fmt.Fprintln(&out, v)
		b, _ := json.Marshal(v)
		out.Write(b)
	}
	out.WriteString(p.String() + p.GoString())
	slog.New(slog.NewTextHandler(&out, nil)).Info("start", "passphrase", p, "config", config{"site", p}, "holder", h)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("start", "passphrase", p, "config", config{"site", p}, "holder", h)
	s := out.String()
	if strings.Contains(s, testSecret) || strings.Contains(s, fmt.Sprintf("%x", testSecret)) || strings.Contains(s, "correct") {
		t.Fatalf("the passphrase was printed:\n%s", s)
	}
	if !strings.Contains(s, "[redacted]") {
		t.Errorf("no [redacted] in:\n%s", s)
	}
}

// FuzzReadFile reads arbitrary bytes as a file, with and without a
// passphrase: an error comes with no data, a file that is not an age file
// reads back as itself, an age file without a passphrase is always
// ErrNoPassphrase, and what decrypts round-trips through WriteFile.
func FuzzReadFile(f *testing.F) {
	es, _ := os.ReadDir("testdata")
	n := 0
	for _, e := range es {
		if e.Name() != "README" {
			f.Add(readTestdata(f, e.Name()))
			n++
		}
	}
	if n == 0 {
		f.Fatal("empty seed corpus")
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "in")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, p := range []Passphrase{{}, pass(katSecret)} {
			got, err := ReadFile(path, p)
			if err != nil {
				if got != nil {
					t.Fatalf("data and error %v", err)
				}
				if !encrypted(b) {
					t.Fatalf("plaintext refused: %v", err)
				}
				if !p.IsSet() && !errors.Is(err, ErrNoPassphrase) {
					t.Fatalf("without a passphrase: %v", err)
				}
				continue
			}
			if !encrypted(b) && !bytes.Equal(got, b) {
				t.Fatal("plaintext changed")
			}
			if encrypted(b) && !p.IsSet() {
				t.Fatal("an age file read without a passphrase")
			}
			out := filepath.Join(dir, "out")
			if err := WriteFile(out, got, 0o600, p); err != nil {
				t.Fatal(err)
			}
			if again, err := ReadFile(out, p); err != nil || !bytes.Equal(again, got) {
				t.Fatalf("round trip: %v", err)
			}
		}
	})
}
