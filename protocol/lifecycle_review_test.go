package protocol

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/internal/atrest"
)

// snapshot returns every regular file under dir with its contents.
func snapshot(t *testing.T, dir string) map[string]string {
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			out[rel] = string(b)
		}
		return nil
	})
	return out
}

// An operator renews; the renewal stops part-way (here site 2's
// coordinator.pin cannot be replaced: a kit directory on a read-only or
// full volume has the same effect). The promise: "nothing is written
// unless every certificate could be issued" and each file is replaced
// atomically. The attack checks the federation afterwards: either the
// failed renewal changed nothing, or, once the cause is removed, running
// --renew again completes it. A renewal that leaves the coordinator's
// certificate and some sites' certificates replaced while the roster
// still lists the old ones, and then refuses to run again, leaves the
// operator with a federation no command can repair.
func TestAttackRenewInterruptedCannotBeResumed(t *testing.T) {
	out := filepath.Join(t.TempDir(), "fed")
	if err := Provision(out, 3, nil); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, out)
	pin2 := filepath.Join(out, "site-2", "coordinator.pin")
	if err := os.Remove(pin2); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(pin2, 0o755); err != nil { // the write of this one file fails
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pin2, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	written, err := Renew(out, nil)
	if err == nil {
		t.Fatal("the renewal did not fail")
	}
	t.Logf("first renewal: %v (files replaced: %d)", err, len(written))
	after := snapshot(t, out)
	var changed []string
	for f, b := range before {
		if a, ok := after[f]; ok && a != b {
			changed = append(changed, f)
		}
	}
	sort.Strings(changed)
	// Remove the cause and run the renewal again, as its error invites.
	os.RemoveAll(pin2)
	os.WriteFile(pin2, []byte(before["site-2/coordinator.pin"]), 0o644)
	_, err2 := Renew(out, nil)
	if len(changed) > 0 && err2 != nil {
		t.Errorf("a failed renewal replaced %v, and a second renewal refuses: %v", changed, err2)
	}
	if err2 == nil {
		// The repaired federation must be consistent: every cert on the
		// coordinator's roster, every pin the coordinator's.
		roster, err := LoadRoster(filepath.Join(out, "coordinator", "roster.json"))
		if err != nil {
			t.Fatal(err)
		}
		coord, _ := readCert(filepath.Join(out, "coordinator", "cert.pem"))
		for _, s := range roster.Sites {
			c, _ := readCert(filepath.Join(out, "site-"+itoa(s.ID), "cert.pem"))
			if certHash(c.Raw) != s.CertHash {
				t.Errorf("site %d's certificate is not on the roster after the second renewal", s.ID)
			}
			pin, _ := os.ReadFile(filepath.Join(out, "site-"+itoa(s.ID), "coordinator.pin"))
			if strings.TrimSpace(string(pin)) != certHash(coord.Raw) {
				t.Errorf("site %d's pin is not the coordinator's certificate after the second renewal", s.ID)
			}
		}
	}
}

// --out pointing at a regular file, at a symlink to a non-empty
// directory or to an existing kit, or at an existing kit itself: nothing
// is overwritten and nothing is written into the link's target.
func TestAttackProvisionOutFileOrSymlink(t *testing.T) {
	parent := t.TempDir()
	file := filepath.Join(parent, "precious.txt")
	os.WriteFile(file, []byte("keep me"), 0o644)
	if err := Provision(file, 3, nil); err == nil {
		t.Error("provisioned over a regular file")
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Error("the file under --out was changed")
	}
	target := filepath.Join(parent, "target")
	os.MkdirAll(target, 0o755)
	os.WriteFile(filepath.Join(target, "data"), []byte("x"), 0o644)
	link := filepath.Join(parent, "link")
	os.Symlink(target, link)
	if err := Provision(link, 3, nil); err == nil {
		t.Error("provisioned through a symlink to a non-empty directory")
	}
	kit := filepath.Join(parent, "kit")
	if err := Provision(kit, 3, nil); err != nil {
		t.Fatal(err)
	}
	kitBefore := snapshot(t, kit)
	if err := Provision(kit, 3, nil); err == nil {
		t.Error("provisioned over an existing kit")
	}
	link2 := filepath.Join(parent, "link2")
	os.Symlink(kit, link2)
	if err := Provision(link2, 3, nil); err == nil {
		t.Error("provisioned over an existing kit through a symlink")
	}
	after := snapshot(t, kit)
	for f, b := range kitBefore {
		if after[f] != b {
			t.Errorf("%s of the existing kit changed", f)
		}
	}
	// A symlink to an empty directory: the target stays empty (no key
	// lands anywhere but under --out).
	empty := filepath.Join(parent, "empty")
	os.Mkdir(empty, 0o755)
	link3 := filepath.Join(parent, "link3")
	os.Symlink(empty, link3)
	if err := Provision(link3, 3, nil); err != nil {
		t.Logf("symlink to an empty directory: %v", err)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Logf("the symlink's target now holds %d entries", len(ents))
	}
	// Nothing is left beside --out by the refused runs.
	ents, _ := os.ReadDir(parent)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".provision-") {
			t.Errorf("a refused run left %s", e.Name())
		}
	}
}

// A site name that tries to reach a file path, the config templates, log
// lines or the roster's JSON: only the validated alphabet gets in, the
// roster stays loadable, and no file appears outside the new kit but the
// rosters. Duplicates are refused.
func TestAttackAddSiteNameInjection(t *testing.T) {
	out := filepath.Join(t.TempDir(), "fed")
	if err := Provision(out, 3, nil); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"../evil", "a/b", "a\nb", `x","id":1,"y":"`, "é", "", strings.Repeat("a", 65), "a b", "a\x00b", "site-1\r"} {
		if bad == "" {
			continue // the API's "no name"
		}
		if _, err := AddSite(out, bad, nil); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "site-4")); err == nil {
		t.Fatal("a refused name wrote a kit")
	}
	for _, name := range []string{"..", "."} {
		before := snapshot(t, filepath.Dir(out))
		id, err := AddSite(out, name, nil)
		if err != nil {
			t.Logf("name %q refused: %v", name, err)
			continue
		}
		after := snapshot(t, filepath.Dir(out))
		for f := range after {
			if _, ok := before[f]; ok {
				continue
			}
			if !strings.HasPrefix(f, filepath.Join("fed", "site-"+itoa(id))+string(filepath.Separator)) {
				t.Errorf("name %q created %s outside its kit", name, f)
			}
		}
		r, err := LoadRoster(filepath.Join(out, "coordinator", "roster.json"))
		if err != nil {
			t.Fatal(err)
		}
		if r.Sites[id-1].Name != name {
			t.Errorf("roster name %q, want %q", r.Sites[id-1].Name, name)
		}
	}
	if _, err := AddSite(out, "st-marys", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := AddSite(out, "st-marys", nil); err == nil {
		t.Error("a duplicate name was accepted")
	}
}

// An operator whose CA key is in plaintext (a federation provisioned
// without a passphrase) adds a site with a passphrase, perhaps mistyped.
// The attack on the operator's own CA: the CA key encrypted in place under
// that passphrase, so that a typo locks the operator out of the CA. The
// key must stay as it was; the new kit's keys are encrypted.
func TestAttackAddSiteEncryptsPlaintextCAKey(t *testing.T) {
	out := filepath.Join(t.TempDir(), "fed")
	if err := Provision(out, 3, nil); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(out, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AddSite(out, "st-marys", &ProvisionOptions{Passphrase: testPassphrase(t, "corect horse")}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(out, CAKeyFile))
	if string(after) != string(before) {
		t.Error("adding a site rewrote the plaintext CA key under the run's passphrase")
	}
	if enc, err := atrest.IsEncrypted(filepath.Join(out, "site-4", "key.pem")); err != nil || !enc {
		t.Errorf("the new kit's key is not encrypted: %v %v", enc, err)
	}
}
