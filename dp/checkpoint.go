package dp

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// A ledger is a transparency log: its entries are the leaves of a Merkle
// tree as in RFC 6962 §2.1 (leaf hash SHA-256(0x00 ‖ line), node hash
// SHA-256(0x01 ‖ left ‖ right)), computed with the Go checksum database's
// golang.org/x/mod/sumdb/tlog, and its owner signs checkpoints of that
// tree in the C2SP tlog-checkpoint format (https://c2sp.org/tlog-checkpoint):
// a signed note (golang.org/x/mod/sumdb/note, https://c2sp.org/signed-note)
// whose text is
//
//	<origin>\n<tree size>\n<base64 root hash>\n
//
// A checkpoint kept by someone else (a witness) lets an auditor detect a
// ledger that was cut short, rolled back or forked after it was signed:
// the ledger must have at least as many entries, and its first Size
// entries must hash to Root.

// Checkpoint errors, wrapped with the detail.
var (
	// ErrCheckpoint: a checkpoint that does not parse, is not signed by the
	// ledger's owner, or names another log.
	ErrCheckpoint = errors.New("dp: invalid ledger checkpoint")
	// ErrLedgerTruncated: a valid checkpoint covers more entries than the
	// ledger holds: entries were cut off or the ledger rolled back.
	ErrLedgerTruncated = errors.New("dp: the ledger is shorter than a checkpoint its owner signed (entries were cut off or rolled back)")
	// ErrLedgerForked: the ledger's first Size entries do not hash to a
	// valid checkpoint's root, or two checkpoints are inconsistent: entries
	// were rewritten, or the owner signed two different histories.
	ErrLedgerForked = errors.New("dp: the ledger does not match a checkpoint its owner signed (entries were rewritten or the ledger forked)")
)

// maxCheckpoint bounds a checkpoint note read from a file or the network:
// a real one, with a few cosignatures, is well under 1 KiB.
const maxCheckpoint = 16 << 10

// LedgerOrigin is the checkpoint origin (and the owner's signing name) of
// the ledger owned by pub: it names that one log and no other.
func LedgerOrigin(owner ed25519.PublicKey) string {
	h := sha256.Sum256(owner)
	return "fl-secure/ledger/" + hex.EncodeToString(h[:8])
}

// A Checkpoint is a verified, parsed checkpoint of a ledger.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
	// Cosigners lists, in order, the names of the witnesses (given to
	// OpenCheckpoint) whose cosignatures verified.
	Cosigners []string
	// Note is the signed note, as read or written.
	Note []byte
}

// ed25519Signer signs notes with an Ed25519 key under a name.
type ed25519Signer struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
}

func (s *ed25519Signer) Name() string    { return s.name }
func (s *ed25519Signer) KeyHash() uint32 { return s.hash }
func (s *ed25519Signer) Sign(msg []byte) ([]byte, error) {
	return ed25519.Sign(s.key, msg), nil
}

func newNoteSigner(name string, key ed25519.PrivateKey) (note.Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("dp: checkpoint signing key is not an Ed25519 private key")
	}
	v, err := newNoteVerifier(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	return &ed25519Signer{name: name, hash: v.KeyHash(), key: key}, nil
}

func newNoteVerifier(name string, pub ed25519.PublicKey) (note.Verifier, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("dp: public key for %q is %d bytes, want %d", name, len(pub), ed25519.PublicKeySize)
	}
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		return nil, fmt.Errorf("dp: key name %q: %w", name, err)
	}
	return note.NewVerifier(vkey)
}

// SignCheckpoint returns the checkpoint note of a tree of size entries
// with root hash root, signed by the ledger owner's key.
func SignCheckpoint(key ed25519.PrivateKey, size int64, root tlog.Hash) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("dp: checkpoint signing key is not an Ed25519 private key")
	}
	if size < 0 {
		return nil, fmt.Errorf("dp: checkpoint of negative size %d", size)
	}
	origin := LedgerOrigin(key.Public().(ed25519.PublicKey))
	s, err := newNoteSigner(origin, key)
	if err != nil {
		return nil, err
	}
	text := fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root[:]))
	return note.Sign(&note.Note{Text: text}, s)
}

// OpenCheckpoint verifies that msg is a checkpoint of the ledger owned by
// owner, signed by it, and parses it. Cosignatures by the witnesses named
// in witnesses (name → public key) are verified and listed; one that is
// present and does not verify is an error; signatures by unknown keys are
// ignored.
func OpenCheckpoint(msg []byte, owner ed25519.PublicKey, witnesses map[string]ed25519.PublicKey) (*Checkpoint, error) {
	if len(msg) > maxCheckpoint {
		return nil, fmt.Errorf("%w: %d bytes, over the %d-byte limit", ErrCheckpoint, len(msg), maxCheckpoint)
	}
	origin := LedgerOrigin(owner)
	ov, err := newNoteVerifier(origin, owner)
	if err != nil {
		return nil, err
	}
	list := []note.Verifier{ov}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range witnesses {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		if name == origin {
			return nil, fmt.Errorf("dp: witness name %q is the ledger's own", name)
		}
		v, err := newNoteVerifier(name, witnesses[name])
		if err != nil {
			return nil, err
		}
		list = append(list, v)
	}
	n, err := note.Open(msg, note.VerifierList(list...))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		if errors.As(err, &unverified) {
			return nil, fmt.Errorf("%w: it is not signed by the ledger's owner key (origin %s)", ErrCheckpoint, origin)
		}
		return nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	cp := &Checkpoint{Note: slices.Clone(msg)}
	ownerSigned := false
	for _, s := range n.Sigs {
		if s.Name == origin {
			ownerSigned = true
		} else if !slices.Contains(cp.Cosigners, s.Name) {
			cp.Cosigners = append(cp.Cosigners, s.Name)
		}
	}
	if !ownerSigned {
		return nil, fmt.Errorf("%w: it is not signed by the ledger's owner key (origin %s)", ErrCheckpoint, origin)
	}
	lines := strings.Split(n.Text, "\n")
	// origin, size, root and the empty string after the final newline; no
	// extension lines are written or accepted.
	if len(lines) != 4 || lines[3] != "" {
		return nil, fmt.Errorf("%w: its text has %d lines, want origin, size and root hash", ErrCheckpoint, len(lines)-1)
	}
	if lines[0] != origin {
		return nil, fmt.Errorf("%w: origin %q, want %q", ErrCheckpoint, truncate(lines[0], 60), origin)
	}
	cp.Origin = lines[0]
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return nil, fmt.Errorf("%w: tree size %q", ErrCheckpoint, truncate(lines[1], 30))
	}
	cp.Size = size
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return nil, fmt.Errorf("%w: root hash %q is not %d bytes of base64", ErrCheckpoint, truncate(lines[2], 60), tlog.HashSize)
	}
	copy(cp.Root[:], root)
	return cp, nil
}

// Cosign verifies that msg is a checkpoint signed by owner and returns it
// with a cosignature by the witness (name, key) added: the witness vouches
// that it has seen this tree head. It checks nothing about history; a
// witness first checks the checkpoint extends the last one it cosigned
// (CheckExtends).
func Cosign(msg []byte, owner ed25519.PublicKey, name string, key ed25519.PrivateKey) ([]byte, error) {
	if name == LedgerOrigin(owner) {
		return nil, fmt.Errorf("dp: witness name %q is the ledger's own", name)
	}
	if _, err := OpenCheckpoint(msg, owner, nil); err != nil {
		return nil, err
	}
	s, err := newNoteSigner(name, key)
	if err != nil {
		return nil, err
	}
	ov, _ := newNoteVerifier(LedgerOrigin(owner), owner)
	n, err := note.Open(msg, note.VerifierList(ov))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	return note.Sign(n, s)
}

// CheckExtends verifies that checkpoint next extends checkpoint prev of
// the same ledger: next is at least as large and proof is a valid tlog
// consistency proof (RFC 6962 §2.1.2) from prev's tree to next's. A
// smaller next is a rollback (ErrLedgerTruncated); an invalid proof or two
// different roots at one size is a fork (ErrLedgerForked).
func CheckExtends(prev, next *Checkpoint, proof tlog.TreeProof) error {
	if prev.Origin != next.Origin {
		return fmt.Errorf("%w: checkpoints of two logs (%s and %s)", ErrCheckpoint, prev.Origin, next.Origin)
	}
	if next.Size < prev.Size {
		return fmt.Errorf("%w: the new checkpoint covers %d entries, the one held covers %d", ErrLedgerTruncated, next.Size, prev.Size)
	}
	if prev.Size == 0 {
		return nil
	}
	if next.Size == prev.Size {
		if next.Root != prev.Root {
			return fmt.Errorf("%w: two different root hashes at %d entries", ErrLedgerForked, prev.Size)
		}
		return nil
	}
	if len(proof) > 64 {
		return fmt.Errorf("%w: consistency proof of %d hashes", ErrCheckpoint, len(proof))
	}
	if err := tlog.CheckTree(proof, next.Size, next.Root, prev.Size, prev.Root); err != nil {
		return fmt.Errorf("%w: the new checkpoint (%d entries) does not extend the one held (%d entries): %v", ErrLedgerForked, next.Size, prev.Size, err)
	}
	return nil
}

// merkleTree holds the stored hashes (tlog.StoredHashIndex order) of a
// ledger's entries in memory; ledgers are small (one entry a round).
type merkleTree struct {
	hashes []tlog.Hash
	n      int64
}

func (t *merkleTree) reader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x < 0 || x >= int64(len(t.hashes)) {
				return nil, fmt.Errorf("dp: internal error: stored hash %d of %d", x, len(t.hashes))
			}
			out[i] = t.hashes[x]
		}
		return out, nil
	})
}

// add appends one leaf, the bytes of one ledger line without its newline.
func (t *merkleTree) add(leaf []byte) error {
	hs, err := tlog.StoredHashes(t.n, leaf, t.reader())
	if err != nil {
		return err
	}
	t.hashes = append(t.hashes, hs...)
	t.n++
	return nil
}

// root returns the root hash of the tree of the first n leaves.
func (t *merkleTree) root(n int64) (tlog.Hash, error) {
	if n < 0 || n > t.n {
		return tlog.Hash{}, fmt.Errorf("dp: internal error: root of %d leaves in a tree of %d", n, t.n)
	}
	return tlog.TreeHash(n, t.reader())
}

// prove returns a consistency proof from the tree of the first n leaves to
// the whole tree.
func (t *merkleTree) prove(n int64) (tlog.TreeProof, error) {
	if n < 0 || n > t.n {
		return nil, fmt.Errorf("dp: a proof from %d entries asked of a ledger of %d", n, t.n)
	}
	if n == 0 || n == t.n {
		return nil, nil
	}
	return tlog.ProveTree(t.n, n, t.reader())
}

// checkAgainst checks the tree against a verified checkpoint of the same
// ledger: it must hold at least cp.Size leaves, the first of which hash to
// cp.Root.
func (t *merkleTree) checkAgainst(cp *Checkpoint) error {
	if cp.Size > t.n {
		return fmt.Errorf("%w: a checkpoint signed by the owner covers %d entries, the ledger holds %d", ErrLedgerTruncated, cp.Size, t.n)
	}
	r, err := t.root(cp.Size)
	if err != nil {
		return err
	}
	if r != cp.Root {
		return fmt.Errorf("%w: the ledger's first %d entries hash to %.16s…, a checkpoint signed by the owner says %.16s…", ErrLedgerForked, cp.Size, r, cp.Root)
	}
	return nil
}
