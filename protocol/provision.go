package protocol

import (
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
}

// ProvisionOptions are Provision's settings; nil means all defaults.
type ProvisionOptions struct {
	// Hosts are the coordinator's DNS names and IP addresses for its
	// certificate (default localhost and 127.0.0.1).
	Hosts []string
	// Passphrase, if set, encrypts every private key of the kits (see
	// SiteConfig.Passphrase). Without one they are written in plaintext.
	Passphrase atrest.Passphrase
}

// Provision writes a federation's kits under out: ca.pem, coordinator/
// (certificate, key, ledger signing key, roster, config template) and
// site-N/ for each site (certificate, key, Ed25519 identity key, ledger
// signing key, roster, the coordinator's pin, config template). The
// roster names the coordinator's ledger public key, so that every site
// verifies the coordinator's ledger checkpoints under a key from its kit,
// and every site's ledger public key, so that an audit of any ledger takes
// its key from the roster rather than from beside the ledger.
// Private keys are written 0600, encrypted with opts.Passphrase if it is
// set. It refuses to write into a directory that already holds a kit.
func Provision(out string, sites int, opts *ProvisionOptions) error {
	if opts == nil {
		opts = &ProvisionOptions{}
	}
	hosts, pass := opts.Hosts, opts.Passphrase
	if sites < 3 || sites > 1000 {
		return fmt.Errorf("protocol: %d sites: a federation needs 3 to 1000", sites)
	}
	if _, err := os.Stat(filepath.Join(out, "ca.pem")); err == nil {
		return fmt.Errorf("protocol: %s already holds a kit; refusing to overwrite it", out)
	}
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	caPub, caKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "fl-secure federation CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caPub, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	if err := writePEM(filepath.Join(out, "ca.pem"), "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	issue := func(cn string, server bool) ([]byte, ed25519.PrivateKey, error) {
		pub, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		t := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(2, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature}
		if server {
			t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			for _, h := range hosts {
				if ip := net.ParseIP(h); ip != nil {
					t.IPAddresses = append(t.IPAddresses, ip)
				} else {
					t.DNSNames = append(t.DNSNames, h)
				}
			}
		} else {
			t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
		der, err := x509.CreateCertificate(rand.Reader, t, ca, pub, caKey)
		return der, key, err
	}
	coordDER, coordKey, err := issue("fl-secure coordinator", true)
	if err != nil {
		return err
	}
	pin := certHash(coordDER)
	ledgerPub, ledgerKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	roster := Roster{Coordinator: &RosterCoordinator{LedgerKey: base64.StdEncoding.EncodeToString(ledgerPub)}}
	type siteKit struct {
		der      []byte
		key      ed25519.PrivateKey
		identity ed25519.PrivateKey
		ledger   ed25519.PrivateKey
	}
	kits := make([]siteKit, sites)
	for i := range kits {
		der, key, err := issue(fmt.Sprintf("fl-secure site %d", i+1), false)
		if err != nil {
			return err
		}
		idPub, id, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		lkPub, lk, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		kits[i] = siteKit{der, key, id, lk}
		roster.Sites = append(roster.Sites, RosterSite{ID: i + 1, CertHash: certHash(der), Identity: base64.StdEncoding.EncodeToString(idPub),
			LedgerKey: base64.StdEncoding.EncodeToString(lkPub)})
	}
	rj, _ := json.MarshalIndent(roster, "", "  ")
	cd := filepath.Join(out, "coordinator")
	if err := os.MkdirAll(cd, 0o700); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(cd, "cert.pem"), "CERTIFICATE", coordDER, 0o644); err != nil {
		return err
	}
	// The private keys are written last, together: with a passphrase each
	// costs a scrypt.
	keys := []pendingKey{{filepath.Join(cd, "key.pem"), coordKey}, {filepath.Join(cd, ledgerKeyFile), ledgerKey}}
	if err := os.WriteFile(filepath.Join(cd, "roster.json"), rj, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cd, "coordinator.conf"), []byte(coordinatorTemplate), 0o644); err != nil {
		return err
	}
	for i, k := range kits {
		sd := filepath.Join(out, fmt.Sprintf("site-%d", i+1))
		if err := os.MkdirAll(sd, 0o700); err != nil {
			return err
		}
		if err := writePEM(filepath.Join(sd, "cert.pem"), "CERTIFICATE", k.der, 0o644); err != nil {
			return err
		}
		keys = append(keys, pendingKey{filepath.Join(sd, "key.pem"), k.key}, pendingKey{filepath.Join(sd, "identity.pem"), k.identity},
			pendingKey{filepath.Join(sd, ledgerKeyFile), k.ledger})
		if err := os.WriteFile(filepath.Join(sd, "roster.json"), rj, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(sd, "coordinator.pin"), []byte(pin+"\n"), 0o644); err != nil {
			return err
		}
		conf := fmt.Sprintf(siteTemplate, i+1, hosts[0])
		if err := os.WriteFile(filepath.Join(sd, "client.conf"), []byte(conf), 0o644); err != nil {
			return err
		}
		if err := writePEM(filepath.Join(sd, "ca.pem"), "CERTIFICATE", caDER, 0o644); err != nil {
			return err
		}
	}
	return writeKeys(keys, pass)
}

type pendingKey struct {
	path string
	key  ed25519.PrivateKey
}

// writeKeys writes keys with writeKey, as many at once as there are
// processors (each encryption is a scrypt of 256 MiB), and returns the
// first error.
func writeKeys(keys []pendingKey, pass atrest.Passphrase) error {
	work := make(chan pendingKey)
	errs := make(chan error, len(keys))
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(keys)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
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
		return errors.New("protocol: client certificate is not on the roster (a site removed from the federation, or a kit issued after this roster)")
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
			return errors.New("protocol: the coordinator's certificate does not match the pin in this kit")
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
# The ledger and the model checkpoints live here.
state = state
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
# This hospital's ledger.
state = state
`
