package protocol

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fl-secure/fl-secure/internal/atrest"
)

// ledgerKeyFile is the name of a ledger's signing key: in a kit, where
// Provision writes it, or (before ledger keys moved to the kits) in the
// state directory beside the ledger.
const ledgerKeyFile = "ledger-key.pem"

// ledgerSigningKey returns the signing key of the ledger dir/ledger.
//
// With keyFile set the key lives there, in the party's kit, out of the
// state directory: whoever can write the ledger (and its checkpoint) must
// not hold the key that signs them, or a ledger cut short or rewritten
// could be signed again. A key still beside the ledger (dir/ledger-key.pem,
// from an earlier version) is refused with what to move where. A missing
// key is created in keyFile when no ledger exists yet.
//
// With keyFile empty the key is dir/ledger-key.pem, as before, created
// when missing: kept for callers that give no kit.
func ledgerSigningKey(dir, ledger, keyFile string, pass atrest.Passphrase) (ed25519.PrivateKey, error) {
	beside := filepath.Join(dir, ledgerKeyFile)
	_, ledgerErr := os.Stat(filepath.Join(dir, ledger))
	ledgerExists := ledgerErr == nil
	if keyFile == "" || filepath.Clean(keyFile) == filepath.Clean(beside) {
		keyFile = beside
	} else if _, err := os.Lstat(beside); err == nil {
		if _, err := os.Lstat(keyFile); err == nil {
			return nil, fmt.Errorf("protocol: %s is a ledger key left in the state directory, beside the ledger, while the ledger key is %s: "+
				"check which one signed %s (its owner_key), keep that one as %s, and remove %s from the state directory "+
				"(whoever can write the state directory must not hold the key that signs the ledger)", beside, keyFile, ledger, keyFile, beside)
		}
		return nil, fmt.Errorf("protocol: the ledger key is in the state directory (%s), beside the ledger; move it to %s "+
			"(the kit, out of reach of whoever can write the state directory; encrypted with the passphrase if there is one) and start again",
			beside, keyFile)
	}
	key, err := readKey(keyFile, pass)
	switch {
	case err == nil:
		return key, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	case ledgerExists:
		return nil, fmt.Errorf("protocol: %s exists but its signing key %s is missing: restore the key (a new key cannot extend a ledger signed by another)",
			filepath.Join(dir, ledger), keyFile)
	}
	// A crash between creating the key and the ledger leaves a key and no
	// ledger, which the next start reuses.
	if _, key, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	if err := writeKey(keyFile, key, pass); err != nil {
		return nil, err
	}
	return key, nil
}

// checkRosterLedgerKey checks that pub, the coordinator's ledger key, is
// the roster's: the sites verify every checkpoint under the roster's key
// and would refuse every round.
func (c *Coordinator) checkRosterLedgerKey(pub ed25519.PublicKey) error {
	want := c.cfg.Roster.ledgerKey()
	if want == nil {
		return nil
	}
	if !want.Equal(pub) {
		return fmt.Errorf("protocol: the ledger key %s is not the coordinator ledger key of the roster (the sites verify the ledger's checkpoints under the roster's key); use the ledger_key of the kit the roster was provisioned with",
			orDefault(c.cfg.LedgerKey, filepath.Join(c.cfg.State, ledgerKeyFile)))
	}
	return nil
}

// checkSiteLedgerKey checks that pub, a site's ledger key, is the one the
// roster names for it: an audit verifies the site's ledger under the
// roster's key and would refuse every entry.
func checkSiteLedgerKey(cfg SiteConfig, pub ed25519.PublicKey) error {
	want := cfg.Roster.SiteLedgerKey(cfg.Site)
	if want == nil {
		return nil
	}
	if !want.Equal(pub) {
		return fmt.Errorf("protocol: the ledger key %s is not site %d's ledger key in the roster (an audit verifies the ledger under the roster's key); use the ledger_key of the kit the roster was provisioned with",
			orDefault(cfg.LedgerKey, filepath.Join(cfg.State, ledgerKeyFile)), cfg.Site)
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
