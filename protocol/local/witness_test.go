package local

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/protocol"
)

// After a simulated run every hospital holds the coordinator's checkpoint
// it cosigned, covering every charge; the audit command names those files
// and the hospitals' names and keys; and the audit with them catches the
// coordinator's ledger cut short with its own checkpoint re-signed and its
// witness copies gone, which the ledger's own audit does not.
func TestSimulateWitnessedAuditCatchesCutLedger(t *testing.T) {
	fc := recordLevel(t, protocol.SecAgg)
	fc.Rounds = 3
	res, err := Simulate(context.Background(), Config{Data: Data{Name: "wdbc", Sites: 4, Alpha: 0.5, TestFraction: 0.25}, Federation: fc})
	if err != nil {
		t.Fatal(err)
	}
	fed := res.Federated
	if len(fed.SiteCheckpoints) != 4 || len(fed.Witnesses) != 4 {
		t.Fatalf("site checkpoints %v, witnesses %+v", fed.SiteCheckpoints, fed.Witnesses)
	}
	if got := fed.WitnessLine(); got != "cosigned by 4 of 4 hospitals at round 3" {
		t.Errorf("witness line %q", got)
	}
	cmd := res.Audit[0]
	for i, f := range fed.SiteCheckpoints {
		if !strings.Contains(cmd, " --checkpoint "+f) || !strings.Contains(cmd, " --witness "+fed.Witnesses[i].Arg()) {
			t.Errorf("the audit command %q does not name site %d's checkpoint %s and key", cmd, i+1, f)
		}
	}
	owner, err := dp.ParsePublicKey(fed.LedgerKey)
	if err != nil {
		t.Fatal(err)
	}
	witnesses := map[string]ed25519.PublicKey{}
	for _, w := range fed.Witnesses {
		k, _ := base64.StdEncoding.DecodeString(w.Key)
		witnesses[w.Name] = k
	}
	opt := dp.AuditOptions{CheckpointFiles: fed.SiteCheckpoints, Witnesses: witnesses}
	a, err := dp.AuditLedger(fed.Ledger, owner, opt)
	if err != nil || !a.OK || a.External != 4 {
		t.Fatalf("audit with the sites' checkpoints: %+v %v", a, err)
	}
	for _, c := range a.Checkpoints {
		if c.External && (c.Size != int64(a.Entries) || len(c.Cosigners) != 1) {
			t.Errorf("checkpoint %+v: want all %d entries, cosigned by its site", c, a.Entries)
		}
	}

	// The coordinator, holding its key, cuts its last charge off and
	// signs a checkpoint of what is left; its copies of the sites'
	// checkpoints go too.
	es, err := dp.ReadLedger(fed.Ledger)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(fed.Ledger)
	lines := strings.SplitAfter(string(b), "\n")
	cut := strings.Join(lines[:len(es)-1], "")
	os.WriteFile(fed.Ledger, []byte(cut), 0o600)
	root, err := dp.TreeRoot(es[:len(es)-1])
	if err != nil {
		t.Fatal(err)
	}
	key, err := readKitKey(filepath.Join(filepath.Dir(filepath.Dir(fed.Ledger)), "kits", "coordinator", "ledger-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	note, err := dp.SignCheckpoint(key, int64(len(es)-1), root)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(fed.Ledger+dp.CheckpointSuffix, note, 0o600)
	os.RemoveAll(filepath.Join(filepath.Dir(fed.Ledger), dp.WitnessDir))
	if a, err := dp.AuditLedger(fed.Ledger, owner); err != nil || !a.OK {
		t.Fatalf("the cut ledger should pass its own audit (the limit the witnesses lift): %+v %v", a, err)
	}
	if a, err := dp.AuditLedger(fed.Ledger, owner, opt); !errors.Is(err, dp.ErrLedgerTruncated) || a.OK {
		t.Errorf("the audit with the sites' checkpoints passed a ledger cut by one charge: %+v %v", a, err)
	}
}

// readKitKey reads an unencrypted PKCS #8 Ed25519 key of a kit.
func readKitKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	return k.(ed25519.PrivateKey), nil
}
