package protocol

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/fl-secure/fl-secure/internal/atrest"
)

// A Roster lists the sites of a federation: their ids, the SHA-256 of
// their TLS certificates, their Ed25519 identity keys (which sign
// secure-aggregation adverts and he submissions and cosign the
// coordinator's ledger checkpoints) and the public keys of their privacy
// ledgers, and the public key of the coordinator's ledger, under which
// sites verify the checkpoints they cosign: a key they got at
// provisioning, never from the coordinator. The ledger keys are what an
// audit verifies each ledger under: they come from provisioning, not from
// the state directory that holds the ledger.
type Roster struct {
	Sites       []RosterSite       `json:"sites"`
	Coordinator *RosterCoordinator `json:"coordinator,omitempty"`
}

// RosterCoordinator is the coordinator's entry in a Roster.
type RosterCoordinator struct {
	LedgerKey string `json:"ledger_key"` // base64 Ed25519 public key
}

// ledgerKey returns the coordinator's ledger public key, or nil if the
// roster names none (a roster provisioned before ledger checkpoints).
func (r *Roster) ledgerKey() ed25519.PublicKey {
	if r.Coordinator == nil {
		return nil
	}
	return parseRosterKey(r.Coordinator.LedgerKey)
}

// CoordinatorLedgerKey returns the coordinator's ledger public key the
// roster names, or nil if it names none (a roster provisioned before
// ledger checkpoints).
func (r *Roster) CoordinatorLedgerKey() ed25519.PublicKey { return r.ledgerKey() }

// SiteLedgerKey returns the ledger public key of site id (1-based) the
// roster names, or nil if it names none (a roster provisioned before the
// sites' ledger keys were put in it, or no such site).
func (r *Roster) SiteLedgerKey(id int) ed25519.PublicKey {
	if id < 1 || id > len(r.Sites) {
		return nil
	}
	return parseRosterKey(r.Sites[id-1].LedgerKey)
}

// parseRosterKey decodes a roster's base64 Ed25519 public key; nil if s is
// empty or not one.
func parseRosterKey(s string) ed25519.PublicKey {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(k) != ed25519.PublicKeySize {
		return nil
	}
	return k
}

// RosterSite is one site of a Roster.
type RosterSite struct {
	ID       int    `json:"id"`
	CertHash string `json:"cert_sha256"` // hex SHA-256 of the DER certificate
	Identity string `json:"identity"`    // base64 Ed25519 public key
	// LedgerKey is the base64 Ed25519 public key of the site's privacy
	// ledger; empty in a roster provisioned before it was put there.
	LedgerKey string `json:"ledger_key,omitempty"`
	// Name is the operator's name for the site (provision --add-site
	// NAME), or empty.
	Name string `json:"name,omitempty"`
}

// ProvisionOptions are Provision's settings; nil means all defaults.
type ProvisionOptions struct {
	// Hosts are the coordinator's DNS names and IP addresses for its
	// certificate (default localhost and 127.0.0.1; for AddSite and
	// Renew, the ones in the coordinator's current certificate).
	Hosts []string
	// Passphrase, if set, encrypts every private key of the kits (see
	// SiteConfig.Passphrase), the CA's included. Without one they are
	// written in plaintext.
	Passphrase atrest.Passphrase
	// Populate, if set, is called with the directory the federation is
	// being built in, before it is moved to its place: what it writes
	// there (demonstration data) is part of the kit, and if it fails
	// nothing is left behind.
	Populate func(dir string) error
	// Context, if set, stops Provision, AddSite and Renew between private
	// keys when it is done (an operator's Ctrl-C): they return its error
	// and leave nothing behind.
	Context context.Context
}

// stopped returns the options' context's error, if it is done.
func (o *ProvisionOptions) stopped() error {
	if o.Context == nil {
		return nil
	}
	return context.Cause(o.Context)
}

// StaleProvisions returns the directories that an earlier provisioning of
// out left behind when it was killed before it could remove them (a
// federation built beside out, a site kit built inside it): they may hold
// private keys, the CA's among them.
func StaleProvisions(out string) []string {
	a, _ := filepath.Glob(filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".provision-*"))
	b, _ := filepath.Glob(filepath.Join(out, ".site-*.provision-*"))
	return append(a, b...)
}

// Certificate lifetimes. The CA is valid for caLifetime and every
// certificate it issues (the coordinator's TLS certificate and each
// site's) for leafLifetime, but never past the CA's own end; all start an
// hour in the past, for clocks that lag. Renew issues fresh leaf
// certificates for the same keys before they expire; a CA that expires
// needs a new federation.
const (
	caLifetime   = 5 * 365 * 24 * time.Hour
	leafLifetime = 2 * 365 * 24 * time.Hour
)

// CAKeyFile is the name of the federation CA's private key, beside
// ca.pem at the top of the federation's directory. Provision keeps it,
// encrypted with the passphrase if one is given, so that AddSite and
// Renew can issue certificates; whoever holds it (and its passphrase) can
// issue certificates that the coordinator accepts once they are on its
// roster. Keep it off the coordinator's machine between uses.
const CAKeyFile = "ca-key.pem"

// Provision writes a federation's kits under out: ca.pem and its key
// CAKeyFile, coordinator/ (certificate, key, ledger signing key, roster,
// config template) and site-N/ for each site (certificate, key, Ed25519
// identity key, ledger signing key, roster, the coordinator's pin, config
// template). The roster names the coordinator's ledger public key, so
// that every site verifies the coordinator's ledger checkpoints under a
// key from its kit, and every site's ledger public key, so that an audit
// of any ledger takes its key from the roster rather than from beside the
// ledger. Private keys are written 0600, encrypted with opts.Passphrase
// if it is set.
//
// The federation is built in a new directory beside out and renamed to
// out when it is complete, so a failed run leaves nothing behind. out
// must not exist or be an empty directory.
func Provision(out string, sites int, opts *ProvisionOptions) (err error) {
	if opts == nil {
		opts = &ProvisionOptions{}
	}
	if sites < 3 || sites > maxSites {
		return fmt.Errorf("protocol: %d sites: a federation needs 3 to %d", sites, maxSites)
	}
	out = filepath.Clean(out)
	if _, err := os.Stat(filepath.Join(out, "ca.pem")); err == nil {
		return fmt.Errorf("protocol: %s already holds a kit; refusing to overwrite it", out)
	}
	if ents, err := os.ReadDir(out); err == nil && len(ents) > 0 {
		return fmt.Errorf("protocol: %s is not empty; give a new or empty directory for the federation", out)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("protocol: %w", err)
	}
	hosts := opts.Hosts
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("protocol: %w", err)
	}
	dir, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".provision-*")
	if err != nil {
		return fmt.Errorf("protocol: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	caPub, caKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "fl-secure federation CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(caLifetime),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caPub, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	if err := writePEM(filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	iss := &issuer{ca: ca, key: caKey, hosts: hosts, now: now}
	coordPub, coordKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	coordDER, err := iss.issue("fl-secure coordinator", coordPub, true)
	if err != nil {
		return err
	}
	pin := certHash(coordDER)
	ledgerPub, ledgerKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	roster := Roster{Coordinator: &RosterCoordinator{LedgerKey: base64.StdEncoding.EncodeToString(ledgerPub)}}
	kits := make([]*siteKit, sites)
	for i := range kits {
		if kits[i], err = newSiteKit(iss, i+1); err != nil {
			return err
		}
		roster.Sites = append(roster.Sites, kits[i].entry)
	}
	rj, _ := json.MarshalIndent(roster, "", "  ")
	cd := filepath.Join(dir, "coordinator")
	if err := os.MkdirAll(cd, 0o700); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(cd, "cert.pem"), "CERTIFICATE", coordDER, 0o644); err != nil {
		return err
	}
	// The private keys are written last, together: with a passphrase each
	// costs a scrypt.
	keys := []pendingKey{{filepath.Join(dir, CAKeyFile), caKey}, {filepath.Join(cd, "key.pem"), coordKey}, {filepath.Join(cd, ledgerKeyFile), ledgerKey}}
	if err := os.WriteFile(filepath.Join(cd, "roster.json"), rj, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cd, "coordinator.conf"), []byte(coordinatorTemplate), 0o644); err != nil {
		return err
	}
	for i, k := range kits {
		sd := filepath.Join(dir, fmt.Sprintf("site-%d", i+1))
		kk, err := k.write(sd, rj, pin, hosts[0], caDER)
		if err != nil {
			return err
		}
		keys = append(keys, kk...)
	}
	if err := writeKeys(keys, opts); err != nil {
		return err
	}
	if opts.Populate != nil {
		if err := opts.Populate(dir); err != nil {
			return err
		}
	}
	return moveInto(dir, out)
}

// maxSites bounds a federation's sites.
const maxSites = 1000

// moveInto renames the directory dir to out, which must not exist or be
// an empty directory, and syncs out's parent so the rename is durable.
func moveInto(dir, out string) error {
	if err := os.Remove(out); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("protocol: %s: %w", out, err)
	}
	if err := os.Rename(dir, out); err != nil {
		return fmt.Errorf("protocol: %w", err)
	}
	if d, err := os.Open(filepath.Dir(out)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// An issuer issues the federation's certificates from its CA.
type issuer struct {
	ca    *x509.Certificate
	key   ed25519.PrivateKey
	hosts []string // the coordinator's names and addresses
	now   time.Time
}

// siteCommonName is the subject of site id's certificate.
func siteCommonName(id int) string { return fmt.Sprintf("fl-secure site %d", id) }

// issued reports whether cert is a certificate this issuer's CA signed
// for site id.
func (iss *issuer) issued(cert *x509.Certificate, id int) bool {
	return cert.CheckSignatureFrom(iss.ca) == nil && cert.Subject.CommonName == siteCommonName(id)
}

// issue returns a DER certificate for pub named cn: a TLS server
// certificate for the issuer's hosts if server, else a client one. It is
// valid for leafLifetime, but not past the CA's end.
func (iss *issuer) issue(cn string, pub ed25519.PublicKey, server bool) ([]byte, error) {
	end := iss.now.Add(leafLifetime)
	if end.After(iss.ca.NotAfter) {
		end = iss.ca.NotAfter
	}
	if !end.After(iss.now) {
		return nil, fmt.Errorf("protocol: the federation CA expired on %s; provision a new federation", iss.ca.NotAfter.UTC().Format(time.DateOnly))
	}
	t := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: iss.now.Add(-time.Hour), NotAfter: end, KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, h := range iss.hosts {
			if ip := net.ParseIP(h); ip != nil {
				t.IPAddresses = append(t.IPAddresses, ip)
			} else {
				t.DNSNames = append(t.DNSNames, h)
			}
		}
	} else {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	return x509.CreateCertificate(rand.Reader, t, iss.ca, pub, iss.key)
}

// A siteKit is one site's new keys and certificate.
type siteKit struct {
	id       int
	der      []byte
	key      ed25519.PrivateKey
	identity ed25519.PrivateKey
	ledger   ed25519.PrivateKey
	entry    RosterSite
}

// newSiteKit makes the keys and certificate of site id.
func newSiteKit(iss *issuer, id int) (*siteKit, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := iss.issue(siteCommonName(id), pub, false)
	if err != nil {
		return nil, err
	}
	idPub, idKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	lkPub, lk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &siteKit{id: id, der: der, key: key, identity: idKey, ledger: lk,
		entry: RosterSite{ID: id, CertHash: certHash(der), Identity: base64.StdEncoding.EncodeToString(idPub),
			LedgerKey: base64.StdEncoding.EncodeToString(lkPub)}}, nil
}

// write writes the kit's public files into the new directory sd and
// returns its private keys, still to be written.
func (k *siteKit) write(sd string, roster []byte, pin, host string, caDER []byte) ([]pendingKey, error) {
	if err := os.Mkdir(sd, 0o700); err != nil {
		return nil, fmt.Errorf("protocol: %w", err)
	}
	if err := writePEM(filepath.Join(sd, "cert.pem"), "CERTIFICATE", k.der, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(sd, "roster.json"), roster, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(sd, "coordinator.pin"), []byte(pin+"\n"), 0o644); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(siteTemplate, k.id, host)
	if err := os.WriteFile(filepath.Join(sd, "client.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(sd, "ca.pem"), "CERTIFICATE", caDER, 0o644); err != nil {
		return nil, err
	}
	return []pendingKey{{filepath.Join(sd, "key.pem"), k.key}, {filepath.Join(sd, "identity.pem"), k.identity},
		{filepath.Join(sd, ledgerKeyFile), k.ledger}}, nil
}

// loadIssuer reads the federation CA under out (ca.pem and CAKeyFile,
// decrypted with pass) and the coordinator's certificate, whose names
// and addresses the issuer keeps unless hosts are given.
func loadIssuer(out string, hosts []string, pass atrest.Passphrase) (*issuer, *x509.Certificate, error) {
	ca, err := readCert(filepath.Join(out, "ca.pem"))
	if err != nil {
		return nil, nil, err
	}
	keyPath := filepath.Join(out, CAKeyFile)
	if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("protocol: %s is missing: the federation was provisioned before the CA key was kept, or the key was moved offline; put it back to issue certificates", keyPath)
	}
	// Read as it is: a CA key kept in plaintext is not encrypted in place
	// under whatever passphrase this run was given (a mistyped one would
	// lock the operator out of the CA).
	b, err := atrest.ReadFile(keyPath, pass)
	if err != nil {
		return nil, nil, err
	}
	defer clear(b)
	key, err := parseKey(keyPath, b)
	if err != nil {
		return nil, nil, err
	}
	if pub, ok := ca.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, nil, fmt.Errorf("protocol: %s is not the key of %s", keyPath, filepath.Join(out, "ca.pem"))
	}
	coord, err := readCert(filepath.Join(out, "coordinator", "cert.pem"))
	if err != nil {
		return nil, nil, err
	}
	if len(hosts) == 0 {
		hosts = append(hosts, coord.DNSNames...)
		for _, ip := range coord.IPAddresses {
			hosts = append(hosts, ip.String())
		}
	}
	if len(hosts) == 0 {
		hosts = []string{"localhost"}
	}
	return &issuer{ca: ca, key: key, hosts: hosts, now: time.Now()}, coord, nil
}

// readCert reads a PEM certificate.
func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("protocol: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("protocol: %s holds no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("protocol: %s: %w", path, err)
	}
	return c, nil
}

// validSiteName reports whether name can name a site: 1 to 64 letters,
// digits, '.', '_' or '-'.
func validSiteName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// AddSite adds a site to the federation provisioned under out: a new kit
// site-N (N the next roster id) with a certificate from the kept CA
// (CAKeyFile, decrypted with opts.Passphrase) and new TLS, identity and
// ledger keys, and a roster that lists it, written to the new kit, to
// coordinator/roster.json and to every site-K/roster.json under out. It
// returns N.
//
// The roster is every party's trust anchor, so the new roster.json must
// reach the coordinator and every existing site before the new site can
// take part: until then the coordinator refuses the new site's
// certificate ("not on the roster"), and a site whose roster is older
// than the coordinator's refuses at join, naming the file to replace (the
// coordinator announces its roster's digest, wire.Plan); a round whose
// site count differs from a site's roster is refused as well. Nothing
// accepts a site silently that some party's roster does not list.
//
// The kit is built beside its place and renamed there when complete;
// the rosters are then replaced one by one, atomically, the coordinator's
// last.
func AddSite(out, name string, opts *ProvisionOptions) (id int, err error) {
	if opts == nil {
		opts = &ProvisionOptions{}
	}
	if name != "" && !validSiteName(name) {
		return 0, fmt.Errorf("protocol: site name %q: use 1 to 64 letters, digits, '.', '_' or '-'", name)
	}
	rosterPath := filepath.Join(out, "coordinator", "roster.json")
	roster, err := LoadRoster(rosterPath)
	if err != nil {
		return 0, err
	}
	if len(roster.Sites) >= maxSites {
		return 0, fmt.Errorf("protocol: the federation has %d sites, the most it can have", len(roster.Sites))
	}
	for _, s := range roster.Sites {
		if name != "" && s.Name == name {
			return 0, fmt.Errorf("protocol: site %d is already named %q", s.ID, name)
		}
	}
	if roster.Sites[0].LedgerKey == "" {
		return 0, fmt.Errorf("protocol: roster %s names no ledger keys (provisioned by an older fl-secure); a roster names every site's or none, so provision a new federation", rosterPath)
	}
	iss, coord, err := loadIssuer(out, opts.Hosts, opts.Passphrase)
	if err != nil {
		return 0, err
	}
	id = len(roster.Sites) + 1
	sd := filepath.Join(out, fmt.Sprintf("site-%d", id))
	if _, err := os.Lstat(sd); !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("protocol: %s already exists, but the roster lists %d sites; move it away first", sd, id-1)
	}
	k, err := newSiteKit(iss, id)
	if err != nil {
		return 0, err
	}
	k.entry.Name = name
	roster.Sites = append(roster.Sites, k.entry)
	rj, _ := json.MarshalIndent(roster, "", "  ")
	tmp, err := os.MkdirTemp(out, fmt.Sprintf(".site-%d.provision-*", id))
	if err != nil {
		return 0, fmt.Errorf("protocol: %w", err)
	}
	defer os.RemoveAll(tmp)
	caDER := iss.ca.Raw
	keys, err := k.write(filepath.Join(tmp, "kit"), rj, certHash(coord.Raw), iss.hosts[0], caDER)
	if err != nil {
		return 0, err
	}
	if err := writeKeys(keys, opts); err != nil {
		return 0, err
	}
	if err := os.Rename(filepath.Join(tmp, "kit"), sd); err != nil {
		return 0, fmt.Errorf("protocol: %w", err)
	}
	if err := replaceRosters(out, rj, id); err != nil {
		return 0, fmt.Errorf("protocol: site-%d was written, but the rosters were not all replaced: %w; copy %s over every kit's roster.json by hand", id, err, filepath.Join(sd, "roster.json"))
	}
	return id, nil
}

// replaceRosters writes roster to every site-K/roster.json under out
// (K < skip, or every K if skip is 0) and then to coordinator/roster.json,
// each atomically.
func replaceRosters(out string, roster []byte, skip int) error {
	ents, err := os.ReadDir(out)
	if err != nil {
		return err
	}
	for _, e := range ents {
		var k int
		if _, err := fmt.Sscanf(e.Name(), "site-%d", &k); err != nil || e.Name() != fmt.Sprintf("site-%d", k) || k == skip {
			continue
		}
		path := filepath.Join(out, e.Name(), "roster.json")
		if _, err := os.Stat(path); err != nil {
			continue // a kit already handed over and removed here
		}
		if err := atrest.WriteFile(path, roster, 0o644, atrest.Passphrase{}); err != nil {
			return err
		}
	}
	return atrest.WriteFile(filepath.Join(out, "coordinator", "roster.json"), roster, 0o644, atrest.Passphrase{})
}

// Renew issues new certificates, from the kept CA, for the coordinator's
// key and every site's under out (the public keys in their current
// certificates; no private key is read but the CA's) and replaces
// coordinator/cert.pem, every site-N/cert.pem, every site-N/coordinator.pin
// and every roster.json, each atomically. The new certificates are valid
// for leafLifetime from now, not past the CA's end. It returns the files
// it replaced.
//
// The roster holds each site's certificate hash and each kit pins the
// coordinator's, so a renewal is a change of every kit: stop the
// coordinator, renew, give every site its new cert.pem, coordinator.pin
// and roster.json, and restart. A site still holding its old files is
// refused at the TLS handshake (its certificate is no longer on the
// roster, or the coordinator's no longer matches its pin), with an error
// that says so. Every site kit must be under out (it reads each
// cert.pem); nothing is written unless every certificate could be issued.
func Renew(out string, opts *ProvisionOptions) ([]string, error) {
	if opts == nil {
		opts = &ProvisionOptions{}
	}
	rosterPath := filepath.Join(out, "coordinator", "roster.json")
	roster, err := LoadRoster(rosterPath)
	if err != nil {
		return nil, err
	}
	iss, coord, err := loadIssuer(out, opts.Hosts, opts.Passphrase)
	if err != nil {
		return nil, err
	}
	type file struct {
		path string
		b    []byte
	}
	var files []file
	certFile := func(path string, der []byte) {
		files = append(files, file{path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})})
	}
	coordPub, ok := coord.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("protocol: %s is not an Ed25519 certificate", filepath.Join(out, "coordinator", "cert.pem"))
	}
	coordDER, err := iss.issue(coord.Subject.CommonName, coordPub, true)
	if err != nil {
		return nil, err
	}
	certFile(filepath.Join(out, "coordinator", "cert.pem"), coordDER)
	pin := certHash(coordDER)
	for i, s := range roster.Sites {
		sd := filepath.Join(out, fmt.Sprintf("site-%d", s.ID))
		old, err := readCert(filepath.Join(sd, "cert.pem"))
		if err != nil {
			return nil, fmt.Errorf("protocol: renewing site %d: %w (every site's kit must be under %s)", s.ID, err, out)
		}
		// The roster's certificate, or one this CA issued to the same
		// site (a renewal that stopped after replacing it, before the
		// rosters): renewing again completes it.
		if certHash(old.Raw) != s.CertHash && !iss.issued(old, s.ID) {
			return nil, fmt.Errorf("protocol: %s is neither the certificate roster %s lists for site %d nor one this federation's CA issued to it", filepath.Join(sd, "cert.pem"), rosterPath, s.ID)
		}
		pub, ok := old.PublicKey.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("protocol: %s is not an Ed25519 certificate", filepath.Join(sd, "cert.pem"))
		}
		der, err := iss.issue(old.Subject.CommonName, pub, false)
		if err != nil {
			return nil, err
		}
		roster.Sites[i].CertHash = certHash(der)
		certFile(filepath.Join(sd, "cert.pem"), der)
		files = append(files, file{filepath.Join(sd, "coordinator.pin"), []byte(pin + "\n")})
	}
	rj, _ := json.MarshalIndent(roster, "", "  ")
	if err := opts.stopped(); err != nil {
		return nil, err
	}
	var written []string
	for _, f := range files {
		if err := atrest.WriteFile(f.path, f.b, 0o644, atrest.Passphrase{}); err != nil {
			return written, fmt.Errorf("protocol: renewal stopped part-way (%d files replaced): %w; renew again once the cause is fixed", len(written), err)
		}
		written = append(written, f.path)
	}
	if err := replaceRosters(out, rj, 0); err != nil {
		return written, fmt.Errorf("protocol: renewal stopped part-way: the certificates and pins were replaced, the rosters not all: %w; renew again once the cause is fixed", err)
	}
	for _, s := range roster.Sites {
		written = append(written, filepath.Join(out, fmt.Sprintf("site-%d", s.ID), "roster.json"))
	}
	return append(written, filepath.Join(out, "coordinator", "roster.json")), nil
}

type pendingKey struct {
	path string
	key  ed25519.PrivateKey
}

// writeKeys writes keys with writeKey under opts' passphrase, as many at
// once as there are processors (each encryption is a scrypt of 256 MiB),
// and returns the first error; once opts' context is done it writes no
// more and returns the context's error.
func writeKeys(keys []pendingKey, opts *ProvisionOptions) error {
	pass := opts.Passphrase
	work := make(chan pendingKey)
	errs := make(chan error, len(keys))
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(keys)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				if err := opts.stopped(); err != nil {
					errs <- err
					continue
				}
				errs <- writeKey(k.path, k.key, pass)
			}
		}()
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func certHash(der []byte) string {
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:])
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("protocol: %w", err)
	}
	defer f.Close()
	return pem.Encode(f, &pem.Block{Type: typ, Bytes: der})
}

// writeKey writes an Ed25519 private key as a PKCS #8 PEM file, mode
// 0600, encrypted with pass if it is set. It never replaces a file.
func writeKey(path string, key ed25519.PrivateKey, pass atrest.Passphrase) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	defer clear(der)
	b := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	defer clear(b)
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("protocol: %s already exists; refusing to replace a key", path)
	}
	return atrest.WriteFile(path, b, 0o600, pass)
}

// readSecret reads a private file, decrypting it with pass. A file still
// in plaintext while a passphrase is given (written before the passphrase
// was set) is encrypted in place, so that it stays in plaintext no longer
// than until the first start with the passphrase.
func readSecret(path string, pass atrest.Passphrase) ([]byte, error) {
	b, err := atrest.ReadFile(path, pass)
	if err != nil || !pass.IsSet() {
		return b, err
	}
	if enc, err := atrest.IsEncrypted(path); err != nil || enc {
		return b, err
	}
	if err := atrest.WriteFile(path, b, 0o600, pass); err != nil {
		clear(b)
		return nil, fmt.Errorf("protocol: %s is not encrypted and could not be encrypted with the passphrase: %w", path, err)
	}
	return b, nil
}

// readKey loads an Ed25519 private key from a PKCS #8 PEM file, decrypting
// it with pass.
func readKey(path string, pass atrest.Passphrase) (ed25519.PrivateKey, error) {
	b, err := readSecret(path, pass)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return parseKey(path, b)
}

// parseKey parses the PKCS #8 PEM Ed25519 private key b read from path.
func parseKey(path string, b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("protocol: %s holds no PEM private key", path)
	}
	defer clear(blk.Bytes)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("protocol: %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("protocol: %s is not an Ed25519 key", path)
	}
	return ek, nil
}

// LoadRoster reads a roster file and checks it.
func LoadRoster(path string) (*Roster, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("protocol: %w", err)
	}
	var r Roster
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("protocol: roster %s: %w", path, err)
	}
	if len(r.Sites) < 3 {
		return nil, fmt.Errorf("protocol: roster %s lists %d sites", path, len(r.Sites))
	}
	for i, s := range r.Sites {
		if s.ID != i+1 {
			return nil, fmt.Errorf("protocol: roster %s: entry %d has id %d", path, i+1, s.ID)
		}
		if k, err := base64.StdEncoding.DecodeString(s.Identity); err != nil || len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("protocol: roster %s: site %d identity key is not a base64 Ed25519 key", path, s.ID)
		}
		if h, err := hex.DecodeString(s.CertHash); err != nil || len(h) != 32 {
			return nil, fmt.Errorf("protocol: roster %s: site %d certificate hash is not 32 hex bytes", path, s.ID)
		}
		if s.LedgerKey != "" && parseRosterKey(s.LedgerKey) == nil {
			return nil, fmt.Errorf("protocol: roster %s: site %d ledger key is not a base64 Ed25519 key", path, s.ID)
		}
		if (s.LedgerKey == "") != (r.Sites[0].LedgerKey == "") {
			return nil, fmt.Errorf("protocol: roster %s: site 1 and site %d do not both name a ledger key (a roster names every site's or none)", path, s.ID)
		}
	}
	if r.Coordinator != nil && r.ledgerKey() == nil {
		return nil, fmt.Errorf("protocol: roster %s: the coordinator's ledger key is not a base64 Ed25519 key", path)
	}
	return &r, nil
}

// Digest returns the SHA-256 of the roster's canonical JSON encoding (its
// fields in order, without indentation), the same for every copy of one
// roster however its file is laid out. A coordinator announces it
// (wire.Plan) so that a site holding an older roster (before
// provision --add-site or --renew) refuses at once and says which file
// to replace.
func (r *Roster) Digest() [32]byte {
	b, _ := json.Marshal(r)
	return sha256.Sum256(b)
}

// identities returns the roster's Ed25519 keys in id order.
func (r *Roster) identities() []ed25519.PublicKey {
	out := make([]ed25519.PublicKey, len(r.Sites))
	for i, s := range r.Sites {
		out[i], _ = base64.StdEncoding.DecodeString(s.Identity)
	}
	return out
}

// siteForCert returns the roster id whose certificate hash is that of der.
func (r *Roster) siteForCert(der []byte) (int, bool) {
	h := certHash(der)
	for _, s := range r.Sites {
		if s.CertHash == h {
			return s.ID, true
		}
	}
	return 0, false
}

// tlsBase loads a party's certificate and key (decrypted with pass) and
// the federation CA for TLS 1.3.
func tlsBase(certFile, keyFile, caFile, who string, pass atrest.Passphrase) (*tls.Config, *x509.CertPool, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("protocol: %s certificate: %w", who, err)
	}
	keyPEM, err := readSecret(keyFile, pass)
	if err != nil {
		return nil, nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	clear(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("protocol: %s certificate %s and key %s: %w", who, certFile, keyFile, err)
	}
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}, pool, nil
}

// serverTLS returns the coordinator's TLS 1.3 configuration: client
// certificates must chain to the federation CA, be valid now, and be on
// the roster. A refused handshake is logged at Warn with the peer's
// address, the certificate's subject and SHA-256 fingerprint (the prefix
// of its cert_sha256 in a roster), and the reason.
func serverTLS(certFile, keyFile, caFile string, roster *Roster, log *slog.Logger, pass atrest.Passphrase) (*tls.Config, error) {
	c, pool, err := tlsBase(certFile, keyFile, caFile, "coordinator", pass)
	if err != nil {
		return nil, err
	}
	// crypto/tls would verify the chain itself (RequireAndVerifyClientCert)
	// but refuse without saying why; VerifyConnection makes the same
	// checks, on every handshake including resumptions, and says why.
	// crypto/tls still checks that the client holds the certificate's key.
	c.ClientCAs, c.ClientAuth = pool, tls.RequireAnyClientCert
	c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		cc := c.Clone()
		cc.GetConfigForClient = nil
		remote := "unknown"
		if hello.Conn != nil {
			remote = hello.Conn.RemoteAddr().String()
		}
		cc.VerifyConnection = func(cs tls.ConnectionState) error {
			now := time.Now
			if cc.Time != nil {
				now = cc.Time
			}
			err := verifyClient(cs.PeerCertificates, pool, roster, now())
			if err != nil {
				args := []any{"remote", remote, "reason", err.Error()}
				if len(cs.PeerCertificates) > 0 {
					leaf := cs.PeerCertificates[0]
					args = append(args, "cn", leaf.Subject.CommonName, "fingerprint", certHash(leaf.Raw)[:16])
				}
				log.Warn("TLS handshake refused", args...)
			}
			return err
		}
		return cc, nil
	}
	return c, nil
}

// verifyClient checks a site's certificate chain as crypto/tls does for
// RequireAndVerifyClientCert, then that the certificate is on the roster.
// The error says which check failed in words an operator can act on.
func verifyClient(certs []*x509.Certificate, pool *x509.CertPool, roster *Roster, now time.Time) error {
	if len(certs) == 0 {
		return errors.New("protocol: no client certificate")
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return errors.New("protocol: client certificate not issued by this federation's CA (a kit of another federation?)")
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired && now.After(leaf.NotAfter):
		return fmt.Errorf("protocol: client certificate expired on %s", leaf.NotAfter.UTC().Format(time.DateOnly))
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Errorf("protocol: client certificate not valid before %s (check the clocks)", leaf.NotBefore.UTC().Format(time.RFC3339))
	case err != nil:
		return fmt.Errorf("protocol: client certificate: %w", err)
	}
	if _, ok := roster.siteForCert(leaf.Raw); !ok {
		return errors.New("protocol: client certificate is not on the roster (a site removed from the federation, a kit issued after this roster, or a certificate replaced by provision --renew)")
	}
	return nil
}

// clientTLS returns a site's TLS 1.3 configuration: the coordinator's
// certificate must chain to the federation CA and match the pin.
func clientTLS(certFile, keyFile, caFile, pin, serverName string, pass atrest.Passphrase) (*tls.Config, error) {
	c, pool, err := tlsBase(certFile, keyFile, caFile, "site", pass)
	if err != nil {
		return nil, err
	}
	c.RootCAs, c.ServerName = pool, serverName
	c.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 || certHash(raw[0]) != pin {
			return errors.New("protocol: the coordinator's certificate does not match the pin in this kit (if the federation's certificates were renewed, install the new coordinator.pin, cert.pem and roster.json)")
		}
		return nil
	}
	return c, nil
}

func loadPool(caFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("protocol: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("protocol: %s holds no certificate", caFile)
	}
	return pool, nil
}

const coordinatorTemplate = `# fl-secure coordinator configuration. Lines are "key = value"; # starts
# a comment. Paths are relative to this file. Flags override every key.

# Where sites connect (host:port).
listen = 0.0.0.0:7443
cert = cert.pem
key = key.pem
ca = ../ca.pem
roster = roster.json
# The ledger's signing key, kept in this kit and out of the state
# directory: whoever can write the ledger must not hold the key that signs
# it. Its public key is in the roster every site holds, and audits verify
# the ledger under the roster's key.
ledger_key = ledger-key.pem

# Private keys and state are encrypted with the passphrase in the
# FL_SECURE_PASSPHRASE environment variable or on the first line of
# passphrase_file (mode 0600); without one they are stored unencrypted.
# passphrase_file = /etc/fl-secure/passphrase

# secagg (default), he, or plain (NOT PRIVATE: the coordinator sees every
# update).
mode = secagg
rounds = 30
# Whole-run privacy budget of the federation (record level).
epsilon = 3
delta = 1e-5
clip = 1
learning_rate = 1
# The model: logistic, linear, softmax or mlp, and the feature count.
model = logistic
features = 30
# The public bounds of every feature (and for regression the label, last),
# in the data's column order: a CSV file of "name,lo,hi[,mean,scale]"
# lines, or wdbc or diabetes for a built-in data set's embedded bounds.
# The statistics round clips every value to them.
feature_ranges = wdbc
# Share of the budget (of its zCDP ρ) for the statistics release that
# standardizes the data and counts the records; 0: no statistics round,
# standardization from feature_ranges and the learning rate over rows, a
# public nominal count of records.
statistics_share = 0.1
# rows = 427
# Never open a sum of fewer sites; noise is sized for min_cohort − colluders
# honest sites.
min_cohort = 3
colluders = 0
# A site silent this long in a phase is a dropout.
phase_timeout = 30s
# How long sites may take to compute their update at the start of a
# training round (local training, or a hospital's own trainer command);
# default phase_timeout. Raise it for hospitals that train with --train-cmd.
# train_timeout = 10m
# The ledger and the model checkpoints live here.
state = state
# Keep the newest keep_checkpoints model checkpoints and every 10th
# round's (0: keep all); the newest is never removed.
keep_checkpoints = 5

# Monitoring, off unless set: Prometheus /metrics and /healthz on this
# address (no authentication: keep it on loopback), and an event log of
# JSON lines (docs/EVENTS.md).
# metrics = 127.0.0.1:9464
# events = events.jsonl
`

const siteTemplate = `# fl-secure site configuration. Lines are "key = value"; # starts a
# comment. Paths are relative to this file. Flags override every key.

site = %d
coordinator = %s:7443
cert = cert.pem
key = key.pem
identity = identity.pem
ca = ca.pem
roster = roster.json
pin_file = coordinator.pin
# This hospital's ledger signing key, kept in this kit and out of the state
# directory (see the coordinator's ledger_key). Its public key is in the
# roster: audits verify this hospital's ledger under the roster's key.
ledger_key = ledger-key.pem

# Private keys and state are encrypted with the passphrase in the
# FL_SECURE_PASSPHRASE environment variable or on the first line of
# passphrase_file (mode 0600); without one they are stored unencrypted.
# passphrase_file = /etc/fl-secure/passphrase

# This hospital's own privacy budget: rounds that would pass it are refused,
# whatever the coordinator asks.
epsilon_cap = 3
delta = 1e-5
# This hospital's own floors; the coordinator's values count only where
# they are stricter. It refuses a round of fewer than min_cohort sites and
# signs no survivor set smaller than that; it assumes up to colluders sites
# work with the coordinator (raising its consistency quorum) and charges as
# if only min_cohort − colluders honest sites added noise.
min_cohort = 3
colluders = 0
# Pay for at most this many attempts of one training round, and for at most
# max_unopened rounds in a row that do not open.
max_attempts = 2
max_unopened = 3

# Local data: a CSV file with a header and a label column.
data = local.csv
label = malignant
# The model the data is loaded for: logistic, softmax, linear or mlp (the
# coordinator's; default logistic).
# model = logistic
# A hospital's own trainer, run every training round instead of
# fl-secure's training (docs/TRAINER.md); data then feeds the statistics
# release and gives the record count. It must finish within the
# coordinator's train_timeout; train_timeout here kills it after that long.
# train_cmd = python3 /opt/hospital/trainer_numpy.py --data local.csv --label malignant
# train_timeout = 1h
# This hospital's ledger.
state = state
`
