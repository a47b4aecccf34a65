package protocol

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/internal/atrest"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// These tests pay for scrypt at the production work factor (2^18, about
// 0.8 s an encryption or decryption): each does as few as it can.

const ageHeader = "age-encryption.org/v1\n-> scrypt "

// testPassphrase returns s as a passphrase, through a 0600 file as an
// operator would give it.
func testPassphrase(t testing.TB, s string) atrest.Passphrase {
	t.Helper()
	path := filepath.Join(t.TempDir(), "passphrase")
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := atrest.PassphraseFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// keyFiles lists the private-key files under dir: every key.pem,
// identity.pem and ledger-key.pem.
func keyFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (d.Name() == "key.pem" || d.Name() == "identity.pem" || d.Name() == "ledger-key.pem" || d.Name() == CAKeyFile) {
			out = append(out, path)
		}
		return err
	})
	return out
}

// assertNoPlaintextKeys checks that every private-key file under dir is
// an age file with an scrypt recipient, decrypts them with pass (in
// parallel: each costs a scrypt), and scans every file under dir for
// "PRIVATE KEY" and for each key's raw bytes: the Ed25519 seed, its hex and
// base64, the PKCS #8 DER and the base64 of that (a PEM body). It returns
// the number of keys checked.
func assertNoPlaintextKeys(t *testing.T, dir string, pass atrest.Passphrase) int {
	t.Helper()
	files := keyFiles(t, dir)
	needles := [][]byte{[]byte("PRIVATE KEY")}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2) // scrypt is memory-bound: more at once is slower
	for _, path := range files {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(raw, []byte(ageHeader)) {
			t.Errorf("%s is not an age file with an scrypt recipient", path)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			key, err := readKey(path, pass)
			if err != nil {
				t.Error(err)
				return
			}
			der, _ := x509.MarshalPKCS8PrivateKey(key)
			seed := key.Seed()
			mu.Lock()
			defer mu.Unlock()
			needles = append(needles, seed, der, []byte(hex.EncodeToString(seed)),
				[]byte(base64.StdEncoding.EncodeToString(seed)[:40]), []byte(base64.StdEncoding.EncodeToString(der)[:40]))
		}()
	}
	wg.Wait()
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s holds key material (needle %d)", path, i)
			}
		}
		return nil
	})
	return len(files)
}

// A kit provisioned with a passphrase holds no private key in plaintext.
func TestAtRestKitHasNoPlaintextKeys(t *testing.T) {
	pass := testPassphrase(t, "kit passphrase")
	dir := t.TempDir()
	if err := Provision(dir, 3, &ProvisionOptions{Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	if n := assertNoPlaintextKeys(t, dir, pass); n != 12 {
		t.Errorf("%d private keys, want 12 (the CA's, the coordinator's two, three per site: TLS, identity, ledger)", n)
	}
	for _, f := range keyFiles(t, dir) {
		if fi, _ := os.Stat(f); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", f, fi.Mode().Perm())
		}
	}
}

// A coordinator and three sites started with the kit's passphrase
// complete a round; afterwards no private key, the ledgers' signing keys
// included, is on disk in plaintext, and the ledgers audit with the
// public keys written beside them.
func TestAtRestRound(t *testing.T) {
	pass := testPassphrase(t, "federation passphrase")
	f := newFederation(t, 3, CoordinatorConfig{Rounds: 1, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
		PhaseTimeout: 20 * time.Second, Passphrase: pass})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cfgs []SiteConfig
	for i := 1; i <= 3; i++ {
		c := f.siteConfig(i)
		c.Passphrase = pass
		cfgs = append(cfgs, c)
	}
	_, wait := runSites(t, ctx, cfgs)
	sum, err := f.coord.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wait()
	if okRounds(sum) != 1 {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
	if n := assertNoPlaintextKeys(t, f.dir, pass); n != 12 {
		t.Errorf("%d private keys, want 12, all in the kits (the 4 ledger keys and the CA's among them)", n)
	}
	if sum.LedgerKey == "" {
		t.Fatal("no ledger key in the summary")
	}
}

// A wrong passphrase, or none, stops a site and a coordinator at start
// with an error that names the file and says what to do, and holds no
// secret; nothing on disk changes, and an existing ledger key is never
// replaced by a fresh one.
func TestAtRestWrongPassphrase(t *testing.T) {
	right := testPassphrase(t, "the right passphrase")
	wrong := testPassphrase(t, "a wrong passphrase")
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(nil)
	identity, key := filepath.Join(dir, "identity.pem"), filepath.Join(dir, "key.pem")
	ledgerKey := filepath.Join(dir, "state", "ledger-key.pem")
	os.Mkdir(filepath.Join(dir, "state"), 0o700)
	for _, p := range []string{identity, key, ledgerKey} {
		if err := writeKey(p, priv, right); err != nil {
			t.Fatal(err)
		}
	}
	cert := filepath.Join(dir, "cert.pem")
	os.WriteFile(cert, []byte("a certificate"), 0o644)
	before := map[string][]byte{}
	for _, p := range []string{identity, key, ledgerKey} {
		before[p], _ = os.ReadFile(p)
	}
	roster := &Roster{Sites: make([]RosterSite, 3)}

	for _, tc := range []struct {
		name string
		pass atrest.Passphrase
		want error
		text string
	}{
		{"wrong", wrong, atrest.ErrWrongPassphrase, ": wrong passphrase"},
		{"none", atrest.Passphrase{}, atrest.ErrNoPassphrase, "none was given: set FL_SECURE_PASSPHRASE or pass --passphrase-file FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSite(SiteConfig{Site: 1, Roster: roster, Identity: identity, State: filepath.Join(dir, "state"),
				Passphrase: tc.pass, Logger: quietLogger()})
			check(t, err, tc.want, identity, tc.text)
			_, err = NewCoordinator(CoordinatorConfig{Roster: roster, Rounds: 1, Clip: 1, LearningRate: 1, Features: 1,
				State: filepath.Join(dir, "state"), Cert: cert, Key: key, Passphrase: tc.pass, Logger: quietLogger()})
			check(t, err, tc.want, key, tc.text)
			// The ledger key exists, its ledger does not (a crash between
			// the two): the key must not be replaced.
			_, err = openOrCreateLedger(filepath.Join(dir, "state"), "site-ledger.jsonl", "", 3, 1e-5, tc.pass, nil)
			check(t, err, tc.want, ledgerKey, tc.text)
		})
	}
	for p, b := range before {
		if now, _ := os.ReadFile(p); !bytes.Equal(now, b) {
			t.Errorf("%s changed", p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "site-ledger.jsonl")); err == nil {
		t.Error("a ledger was created")
	}
}

func check(t *testing.T, err, want error, file, text string) {
	t.Helper()
	switch {
	case !errors.Is(err, want):
		t.Errorf("error %v, want %v", err, want)
	case !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), text):
		t.Errorf("error %q should name %s and say %q", err, file, text)
	case strings.Contains(err.Error(), "the right passphrase") || strings.Contains(err.Error(), "a wrong passphrase"):
		t.Errorf("error %q holds a passphrase", err)
	}
}

// A kit from before passphrases: a site started with one encrypts its
// plaintext keys in place, and reads them with it afterwards.
func TestAtRestMigratesPlaintextKeys(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(nil)
	path := filepath.Join(dir, "identity.pem")
	if err := writeKey(path, priv, atrest.Passphrase{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); !bytes.HasPrefix(b, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Fatalf("without a passphrase the key should be plain PEM: %q", b)
	}
	pass := testPassphrase(t, "new passphrase")
	k, err := readKey(path, pass)
	if err != nil || !k.Equal(priv) {
		t.Fatalf("migration read: %v", err)
	}
	b, _ := os.ReadFile(path)
	if !bytes.HasPrefix(b, []byte(ageHeader)) || bytes.Contains(b, []byte("PRIVATE KEY")) {
		t.Fatal("the key was not encrypted in place")
	}
	if k, err := readKey(path, pass); err != nil || !k.Equal(priv) {
		t.Fatalf("after migration: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	// writeKey never replaces a key.
	if err := writeKey(path, priv, pass); err == nil {
		t.Error("a key was replaced")
	}
}

// Mode he with a passphrase: the site's threshold-decryption state
// (he-party.bin) is an age file, unreadable without the passphrase.
func TestAtRestHEState(t *testing.T) {
	if testing.Short() {
		t.Skip("a key ceremony and scrypt at 2^18")
	}
	pass := testPassphrase(t, "he passphrase")
	f := newFederation(t, 3, CoordinatorConfig{Mode: HE, Rounds: 1, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
		PhaseTimeout: 30 * time.Second, Passphrase: pass})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var cfgs []SiteConfig
	for i := 1; i <= 3; i++ {
		c := f.siteConfig(i)
		c.Passphrase = pass
		cfgs = append(cfgs, c)
	}
	sites, wait := runSites(t, ctx, cfgs)
	sum, err := f.coord.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wait()
	if okRounds(sum) != 1 {
		t.Fatalf("rounds %+v", sum.Rounds)
	}
	for _, s := range sites {
		path := filepath.Join(s.cfg.State, "he-party.bin")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte(ageHeader)) {
			t.Errorf("site %d: he-party.bin starts %q, not with an age header", s.cfg.Site, b[:min(len(b), 32)])
		}
		if _, err := atrest.ReadFile(path, atrest.Passphrase{}); !errors.Is(err, atrest.ErrNoPassphrase) {
			t.Errorf("site %d: read without the passphrase: %v", s.cfg.Site, err)
		}
	}
	// A restarted site reads its encrypted state back.
	s := sites[0]
	s.he = nil
	st := &wire.RoundStart{HePreset: heNetPreset.Name, HeMaxAbs: heNetMaxAbs, Sites: 3, MinCohort: 3}
	if _, _, err := s.heParty(st); err != nil {
		t.Errorf("restoring the encrypted state: %v", err)
	}
}
