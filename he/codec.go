package he

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/ring"
)

// Every encoding starts with a 4-byte magic, a version, a kind and the
// preset ID, so that a message of one kind or parameter set can never be
// parsed as another. Polynomials are written as their residues, 8 bytes
// little-endian each, and every residue is checked to be below its modulus
// before lattigo sees it: lattigo's own decoders trust their input.
const (
	magic   = "FLHE"
	version = 2 // 2: commitments and key confirmation in setup; MinContributors in the state

	kindAdvert     = 1
	kindSetup      = 2 // a reveal: public-key share and sealed Shamir shares
	kindSubmission = 3
	kindRequest    = 4
	kindShare      = 5
	kindState      = 6
	kindCommit     = 7
	kindConfirm    = 8
)

// maxMessage bounds any encoding: 2^20 values at the largest preset are
// 256 MiB of ciphertext; nothing larger is ever legitimate.
const maxMessage = 1 << 30

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("he: malformed message")

type writer struct{ b []byte }

func newWriter(kind byte, preset byte, size int) *writer {
	w := &writer{b: make([]byte, 0, size+8)}
	w.b = append(w.b, magic...)
	w.b = append(w.b, version, kind, preset, 0)
	return w
}

func (w *writer) u32(v uint32) { w.b = binary.LittleEndian.AppendUint32(w.b, v) }
func (w *writer) u64(v uint64) { w.b = binary.LittleEndian.AppendUint64(w.b, v) }
func (w *writer) bytes(p []byte) {
	w.u32(uint32(len(p)))
	w.b = append(w.b, p...)
}
func (w *writer) poly(p ring.Poly) {
	for _, row := range p.Coeffs {
		for _, c := range row {
			w.b = binary.LittleEndian.AppendUint64(w.b, c)
		}
	}
}

type reader struct {
	b    []byte
	what string
	err  error
}

func newReader(b []byte, kind byte, preset byte, what string) *reader {
	r := &reader{b: b, what: what}
	switch {
	case len(b) > maxMessage:
		r.fail("%d bytes, over the %d-byte limit", len(b), maxMessage)
	case len(b) < 8:
		r.fail("%d bytes, shorter than the 8-byte header", len(b))
	case string(b[:4]) != magic:
		r.fail("bad magic %q", b[:4])
	case b[4] != version:
		r.fail("version %d, want %d", b[4], version)
	case b[5] != kind:
		r.fail("message kind %d, want %d", b[5], kind)
	case b[6] != preset:
		r.fail("parameter preset %d, want %d", b[6], preset)
	case b[7] != 0:
		r.fail("reserved byte is %d", b[7])
	default:
		r.b = b[8:]
	}
	return r
}

func (r *reader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s: %s", ErrMalformed, r.what, fmt.Sprintf(format, a...))
	}
	r.b = nil
}

func (r *reader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.fail("%s needs %d bytes, %d left", field, n, len(r.b))
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u32(field string) uint32 {
	p := r.take(4, field)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(p)
}

func (r *reader) u64(field string) uint64 {
	p := r.take(8, field)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(p)
}

func (r *reader) bytes(field string, max int) []byte {
	n := r.u32(field + " length")
	if r.err == nil && int64(n) > int64(max) {
		r.fail("%s length %d, over its limit %d", field, n, max)
		return nil
	}
	return r.take(int(n), field)
}

// poly reads a polynomial with len(moduli) residues of n coefficients,
// checking each against its modulus.
func (r *reader) poly(n int, moduli []uint64, field string) ring.Poly {
	p := r.take(n*len(moduli)*8, field)
	if p == nil {
		return ring.Poly{}
	}
	out := ring.NewPoly(n, len(moduli)-1)
	for i, q := range moduli {
		row := out.Coeffs[i]
		for j := range row {
			c := binary.LittleEndian.Uint64(p[(i*n+j)*8:])
			if c >= q {
				r.fail("%s: residue %d of coefficient %d is %d, not below its modulus", field, i, j, c)
				return ring.Poly{}
			}
			row[j] = c
		}
	}
	return out
}

func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	return r.err
}
