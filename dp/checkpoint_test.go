package dp

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func testTree(t *testing.T, n int) *merkleTree {
	t.Helper()
	var m merkleTree
	for i := range n {
		if err := m.add(fmt.Appendf(nil, `{"seq":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	return &m
}

func signedAt(t *testing.T, key ed25519.PrivateKey, m *merkleTree, n int64) *Checkpoint {
	t.Helper()
	r, err := m.root(n)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := SignCheckpoint(key, n, r)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := OpenCheckpoint(msg, key.Public().(ed25519.PublicKey), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestCheckpointFormat(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	m := testTree(t, 5)
	cp := signedAt(t, key, m, 5)
	text, _, _ := bytes.Cut(cp.Note, []byte("\n\n"))
	lines := strings.Split(string(text), "\n")
	if len(lines) != 3 || lines[0] != LedgerOrigin(pub) || lines[1] != "5" {
		t.Fatalf("checkpoint text %q: want origin, size 5, root", text)
	}
	if !bytes.Contains(cp.Note, []byte("\n— "+LedgerOrigin(pub)+" ")) {
		t.Fatalf("checkpoint %q carries no signature line by its origin", cp.Note)
	}
	if err := m.checkAgainst(cp); err != nil {
		t.Fatal(err)
	}
}

// TestAttackCheckpointForgeries: a checkpoint altered after signing,
// signed by another key, or naming another log is refused.
func TestAttackCheckpointForgeries(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	m := testTree(t, 4)
	cp := signedAt(t, key, m, 4)
	altered := bytes.Replace(cp.Note, []byte("\n4\n"), []byte("\n3\n"), 1)
	r, _ := m.root(4)
	foreign, _ := SignCheckpoint(other, 4, r)
	for name, msg := range map[string][]byte{"altered size": altered, "other key": foreign, "empty": nil, "huge": make([]byte, maxCheckpoint+1)} {
		if _, err := OpenCheckpoint(msg, pub, nil); !errors.Is(err, ErrCheckpoint) {
			t.Errorf("%s: OpenCheckpoint = %v, want ErrCheckpoint", name, err)
		}
	}
}

// TestAttackLedgerCutOrForked: a tree cut below a signed checkpoint, or
// whose entries differ from those the checkpoint covers, is caught.
func TestAttackLedgerCutOrForked(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	full := testTree(t, 7)
	cp := signedAt(t, key, full, 7)
	if err := testTree(t, 5).checkAgainst(cp); !errors.Is(err, ErrLedgerTruncated) {
		t.Errorf("cut ledger: %v, want ErrLedgerTruncated", err)
	}
	var fork merkleTree
	for i := range 8 {
		leaf := fmt.Appendf(nil, `{"seq":%d}`, i)
		if i == 3 {
			leaf = []byte(`{"seq":3,"forged":true}`)
		}
		fork.add(leaf)
	}
	if err := fork.checkAgainst(cp); !errors.Is(err, ErrLedgerForked) {
		t.Errorf("forked ledger: %v, want ErrLedgerForked", err)
	}
}

func TestCheckExtends(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	m := testTree(t, 9)
	old := signedAt(t, key, m, 4)
	next := signedAt(t, key, m, 9)
	proof, err := m.prove(4)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckExtends(old, next, proof); err != nil {
		t.Fatalf("a checkpoint of a longer tree does not extend its prefix: %v", err)
	}
	if err := CheckExtends(old, old, nil); err != nil {
		t.Fatalf("a checkpoint does not extend itself: %v", err)
	}
	if err := CheckExtends(next, old, nil); !errors.Is(err, ErrLedgerTruncated) {
		t.Errorf("rollback: %v, want ErrLedgerTruncated", err)
	}
	// A forked history: same size as next, different entries.
	var fork merkleTree
	for i := range 9 {
		fork.add(fmt.Appendf(nil, `{"seq":%d,"fork":1}`, i))
	}
	forked := signedAt(t, key, &fork, 9)
	fproof, _ := fork.prove(4)
	if err := CheckExtends(old, forked, fproof); !errors.Is(err, ErrLedgerForked) {
		t.Errorf("fork: %v, want ErrLedgerForked", err)
	}
	if err := CheckExtends(next, forked, nil); !errors.Is(err, ErrLedgerForked) {
		t.Errorf("two roots at one size: %v, want ErrLedgerForked", err)
	}
}

func TestCosign(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	wpub, wkey, _ := ed25519.GenerateKey(rand.Reader)
	_, wrong, _ := ed25519.GenerateKey(rand.Reader)
	m := testTree(t, 3)
	cp := signedAt(t, key, m, 3)
	co, err := Cosign(cp.Note, pub, "fl-secure/site/1", wkey)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenCheckpoint(co, pub, map[string]ed25519.PublicKey{"fl-secure/site/1": wpub})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Cosigners) != 1 || got.Cosigners[0] != "fl-secure/site/1" || got.Size != 3 {
		t.Fatalf("cosigners %v size %d", got.Cosigners, got.Size)
	}
	// A cosignature under the witness's name by another key is refused.
	bad, _ := Cosign(cp.Note, pub, "fl-secure/site/1", wrong)
	if got, err := OpenCheckpoint(bad, pub, map[string]ed25519.PublicKey{"fl-secure/site/1": wpub}); err != nil || len(got.Cosigners) != 0 {
		t.Errorf("a cosignature by the wrong key: cosigners %v, err %v; want none counted", got.Cosigners, err)
	}
	// The witness cannot stand in for the owner.
	if _, err := Cosign(cp.Note, pub, LedgerOrigin(pub), wkey); err == nil {
		t.Error("a witness cosigned under the ledger's own name")
	}
}
