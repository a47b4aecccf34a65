package protocol

import (
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fl-secure/fl-secure/internal/atrest"
)

// A failed provisioning leaves nothing behind: not the directory, not its
// temporary twin.
func TestProvisionAtomic(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "fed")
	boom := errors.New("demo data failed")
	err := Provision(out, 3, &ProvisionOptions{Populate: func(dir string) error {
		if _, err := os.Stat(filepath.Join(dir, "site-3", "key.pem")); err != nil {
			t.Errorf("Populate ran before the kits were complete: %v", err)
		}
		return boom
	}})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v", err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Errorf("a failed run left %v", ents)
	}
	// A non-empty directory is refused, an empty one is filled.
	if err := os.MkdirAll(filepath.Join(parent, "busy", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Provision(filepath.Join(parent, "busy"), 3, nil); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("provisioning into a non-empty directory: %v", err)
	}
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Provision(out, 3, nil); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.pem", CAKeyFile, "coordinator/roster.json", "site-3/identity.pem"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	if fi, err := os.Stat(filepath.Join(out, CAKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode %v, %v", fi.Mode().Perm(), err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 2 {
		t.Errorf("the parent holds %v", ents)
	}
}

// Certificates live 2 years, never past the CA's 5.
func TestCertificateLifetimes(t *testing.T) {
	out := filepath.Join(t.TempDir(), "fed")
	if err := Provision(out, 3, nil); err != nil {
		t.Fatal(err)
	}
	ca, err := readCert(filepath.Join(out, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	site, err := readCert(filepath.Join(out, "site-1", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if d := ca.NotAfter.Sub(ca.NotBefore); d < caLifetime || d > caLifetime+2*time.Hour {
		t.Errorf("CA lifetime %v", d)
	}
	if d := site.NotAfter.Sub(site.NotBefore); d < leafLifetime || d > leafLifetime+2*time.Hour {
		t.Errorf("site certificate lifetime %v", d)
	}
	// An issuer whose CA ends soon caps the leaf at the CA's end, and an
	// expired CA issues nothing.
	key, err := readKey(filepath.Join(out, CAKeyFile), atrest.Passphrase{})
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	iss := &issuer{ca: ca, key: key, now: ca.NotAfter.Add(-24 * time.Hour)}
	der, err := iss.issue("x", pub, false)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := x509.ParseCertificate(der); err != nil || !c.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("leaf ends %v, the CA %v", c.NotAfter, ca.NotAfter)
	}
	iss.now = ca.NotAfter.Add(time.Hour)
	if _, err := iss.issue("x", pub, false); err == nil || !strings.Contains(err.Error(), "CA expired") {
		t.Errorf("an expired CA issued: %v", err)
	}
}

// AddSite issues a kit from the kept CA and puts the new roster in every
// kit; the new site's certificate is accepted under the new roster only,
// and a site with the old roster is told to replace it.
func TestAddSite(t *testing.T) {
	out := filepath.Join(t.TempDir(), "fed")
	if err := Provision(out, 3, nil); err != nil {
		t.Fatal(err)
	}
	oldRoster, err := LoadRoster(filepath.Join(out, "site-1", "roster.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AddSite(out, "bad name!", nil); err == nil || !strings.Contains(err.Error(), "site name") {
		t.Errorf("a bad name: %v", err)
	}
	id, err := AddSite(out, "st-marys", nil)
	if err != nil || id != 4 {
		t.Fatalf("AddSite: %d, %v", id, err)
	}
	if _, err := AddSite(out, "st-marys", nil); err == nil || !strings.Contains(err.Error(), "already named") {
		t.Errorf("a second site of the same name: %v", err)
	}
	want, err := os.ReadFile(filepath.Join(out, "coordinator", "roster.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, kit := range []string{"site-1", "site-2", "site-3", "site-4"} {
		got, err := os.ReadFile(filepath.Join(out, kit, "roster.json"))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s/roster.json is not the coordinator's: %v", kit, err)
		}
	}
	roster, err := LoadRoster(filepath.Join(out, "coordinator", "roster.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(roster.Sites) != 4 || roster.Sites[3].Name != "st-marys" || roster.SiteLedgerKey(4) == nil {
		t.Fatalf("roster %+v", roster.Sites)
	}
	for _, f := range []string{"cert.pem", "key.pem", "identity.pem", "ledger-key.pem", "coordinator.pin", "client.conf", "ca.pem"} {
		if _, err := os.Stat(filepath.Join(out, "site-4", f)); err != nil {
			t.Error(err)
		}
	}
	if conf, _ := os.ReadFile(filepath.Join(out, "site-4", "client.conf")); !strings.Contains(string(conf), "site = 4\n") {
		t.Errorf("client.conf:\n%s", conf)
	}
	pin, _ := os.ReadFile(filepath.Join(out, "site-1", "coordinator.pin"))
	pin4, _ := os.ReadFile(filepath.Join(out, "site-4", "coordinator.pin"))
	if string(pin) != string(pin4) {
		t.Error("the new kit pins another coordinator certificate")
	}
	cert4, err := readCert(filepath.Join(out, "site-4", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := loadPool(filepath.Join(out, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyClient([]*x509.Certificate{cert4}, pool, roster, time.Now()); err != nil {
		t.Errorf("the new site under the new roster: %v", err)
	}
	if err := verifyClient([]*x509.Certificate{cert4}, pool, oldRoster, time.Now()); err == nil || !strings.Contains(err.Error(), "not on the roster") {
		t.Errorf("the new site under the old roster: %v", err)
	}
	// No leftovers beside the kits.
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	// Without the CA key nothing can be added, and the error says why.
	if err := os.Rename(filepath.Join(out, CAKeyFile), filepath.Join(out, "away.pem")); err != nil {
		t.Fatal(err)
	}
	if _, err := AddSite(out, "", nil); err == nil || !strings.Contains(err.Error(), CAKeyFile) {
		t.Errorf("without the CA key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "site-5")); err == nil {
		t.Error("a kit was written without a CA key")
	}
}

// Renew reissues every certificate for the same keys, and replaces the
// pins and rosters to match; the old certificates are refused.
func TestRenew(t *testing.T) {
	out := filepath.Join(t.TempDir(), "fed")
	if err := Provision(out, 3, &ProvisionOptions{Hosts: []string{"coord.example", "10.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	old1, _ := readCert(filepath.Join(out, "site-1", "cert.pem"))
	oldCoord, _ := readCert(filepath.Join(out, "coordinator", "cert.pem"))
	files, err := Renew(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1+3*2+3+1 {
		t.Errorf("%d files replaced: %v", len(files), files)
	}
	new1, _ := readCert(filepath.Join(out, "site-1", "cert.pem"))
	newCoord, _ := readCert(filepath.Join(out, "coordinator", "cert.pem"))
	if new1.SerialNumber.Cmp(old1.SerialNumber) == 0 || !new1.PublicKey.(ed25519.PublicKey).Equal(old1.PublicKey) {
		t.Error("site 1's certificate was not reissued for its key")
	}
	if !newCoord.PublicKey.(ed25519.PublicKey).Equal(oldCoord.PublicKey) || newCoord.DNSNames[0] != "coord.example" || !newCoord.IPAddresses[0].Equal(oldCoord.IPAddresses[0]) {
		t.Errorf("the coordinator's certificate changed key or names: %v %v", newCoord.DNSNames, newCoord.IPAddresses)
	}
	roster, err := LoadRoster(filepath.Join(out, "site-2", "roster.json"))
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := loadPool(filepath.Join(out, "ca.pem"))
	if err := verifyClient([]*x509.Certificate{new1}, pool, roster, time.Now()); err != nil {
		t.Errorf("the renewed certificate: %v", err)
	}
	if err := verifyClient([]*x509.Certificate{old1}, pool, roster, time.Now()); err == nil || !strings.Contains(err.Error(), "--renew") {
		t.Errorf("the old certificate: %v", err)
	}
	pin, _ := os.ReadFile(filepath.Join(out, "site-3", "coordinator.pin"))
	if strings.TrimSpace(string(pin)) != certHash(newCoord.Raw) {
		t.Error("site 3's pin is not the new coordinator certificate's")
	}
	// A kit missing from the directory stops the renewal before it writes.
	if err := os.RemoveAll(filepath.Join(out, "site-2")); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(out, "coordinator", "cert.pem"))
	if _, err := Renew(out, nil); err == nil || !strings.Contains(err.Error(), "site 2") {
		t.Errorf("renewing without site 2's kit: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(out, "coordinator", "cert.pem")); string(after) != string(before) {
		t.Error("a failed renewal replaced the coordinator's certificate")
	}
}

// An encrypted CA key (Provision encrypts it with the passphrase, as
// TestAtRestKitHasNoPlaintextKeys checks) issues nothing without the
// passphrase.
func TestAddSiteNeedsPassphrase(t *testing.T) {
	out := filepath.Join(t.TempDir(), "fed")
	if err := Provision(out, 3, nil); err != nil {
		t.Fatal(err)
	}
	pass := testPassphrase(t, "correct horse")
	if _, err := readSecret(filepath.Join(out, CAKeyFile), pass); err != nil { // encrypts it in place
		t.Fatal(err)
	}
	if _, err := AddSite(out, "", nil); err == nil {
		t.Error("a site was added without the passphrase")
	}
	if _, err := os.Stat(filepath.Join(out, "site-4")); err == nil {
		t.Error("a kit was written")
	}
}
