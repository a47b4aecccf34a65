package dp

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
)

// checkpointSeeds loads the checkpoint notes in testdata/checkpoint.
func checkpointSeeds(t testing.TB) [][]byte {
	names, _ := filepath.Glob(filepath.Join("testdata", "checkpoint", "*.checkpoint"))
	if len(names) == 0 {
		t.Fatal("no seed checkpoints in testdata/checkpoint")
	}
	var out [][]byte
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

var seedWitnesses = map[string]ed25519.PublicKey{"site-1": testKey(7).Public().(ed25519.PublicKey)}

// TestCheckpointBadLengths: every truncation and every extension by a
// byte of a valid checkpoint note is refused, except a truncation that
// drops whole cosignature lines, which verifies with those cosigners gone.
func TestCheckpointBadLengths(t *testing.T) {
	pub := testKey(1).Public().(ed25519.PublicKey)
	for _, note := range checkpointSeeds(t) {
		full, err := OpenCheckpoint(note, pub, seedWitnesses)
		if err != nil {
			t.Fatalf("seed: %v", err)
		}
		for n := 0; n < len(note); n++ {
			cp, err := OpenCheckpoint(note[:n], pub, seedWitnesses)
			if err == nil && (len(cp.Cosigners) >= len(full.Cosigners) || note[n-1] != '\n') {
				t.Errorf("truncated to %d bytes: accepted (%d entries, cosigners %v)", n, cp.Size, cp.Cosigners)
			}
		}
		for _, b := range []byte{'\n', ' ', 'A', 0} {
			if _, err := OpenCheckpoint(append(bytes.Clone(note), b), pub, seedWitnesses); err == nil {
				t.Errorf("extended by %q: accepted", b)
			}
		}
	}
}

// FuzzOpenCheckpoint: arbitrary bytes give a checkpoint or an error,
// never a panic, and nil whenever an error is returned; what verifies
// re-opens to the same checkpoint.
func FuzzOpenCheckpoint(f *testing.F) {
	for _, s := range checkpointSeeds(f) {
		f.Add(s)
	}
	pub := testKey(1).Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, data []byte) {
		cp, err := OpenCheckpoint(data, pub, seedWitnesses)
		if err != nil {
			if cp != nil {
				t.Fatal("a checkpoint and an error")
			}
			return
		}
		again, err := OpenCheckpoint(cp.Note, pub, seedWitnesses)
		if err != nil || again.Size != cp.Size || again.Root != cp.Root {
			t.Fatalf("round trip: %v", err)
		}
	})
}
