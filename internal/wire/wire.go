// Package wire holds the strict binary encoding shared by fl-secure's
// messages: big-endian fixed-width integers, fixed-size byte fields and
// counted lists whose count is checked against both a protocol maximum and
// the bytes actually present before anything is allocated.
package wire

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// Writer appends fields to a byte slice.
type Writer struct{ b []byte }

// NewWriter returns a Writer whose buffer has capacity for n bytes.
func NewWriter(n int) *Writer { return &Writer{b: make([]byte, 0, n)} }

func (w *Writer) U8(v uint8)     { w.b = append(w.b, v) }
func (w *Writer) U32(v uint32)   { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *Writer) U64(v uint64)   { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *Writer) Bytes(v []byte) { w.b = append(w.b, v...) }
func (w *Writer) Finish() []byte { return w.b }

// Extend appends n bytes and returns them for the caller to fill; they are
// zero when the Writer was created with room for them (NewWriter's buffer
// comes zeroed), and the caller must overwrite all of them in any case.
func (w *Writer) Extend(n int) []byte {
	if cap(w.b)-len(w.b) < n {
		w.b = slices.Grow(w.b, n)
	}
	w.b = w.b[:len(w.b)+n]
	return w.b[len(w.b)-n:]
}

// Reader consumes fields from a message. The first failure is kept and every
// later read returns zero values, so a decoder reads all fields and checks
// Err once; messages name the message type and the field that was wrong.
type Reader struct {
	b   []byte
	msg string
	err error
}

// NewReader returns a Reader over b; msg names the message type in errors,
// e.g. "secagg: decoding MaskedInput".
func NewReader(b []byte, msg string) *Reader { return &Reader{b: b, msg: msg} }

// Err returns the first decoding error, if any.
func (r *Reader) Err() error { return r.err }

// Fail records err (formatted) unless an earlier error is already recorded.
func (r *Reader) Fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%s: %s", r.msg, fmt.Sprintf(format, args...))
	}
}

func (r *Reader) take(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.Fail("%s: truncated: need %d bytes, have %d", field, n, len(r.b))
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// U8 reads one byte.
func (r *Reader) U8(field string) uint8 {
	if v := r.take(field, 1); v != nil {
		return v[0]
	}
	return 0
}

// U32 reads a big-endian uint32.
func (r *Reader) U32(field string) uint32 {
	if v := r.take(field, 4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

// U64 reads a big-endian uint64.
func (r *Reader) U64(field string) uint64 {
	if v := r.take(field, 8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// Fixed reads exactly n bytes into dst (len(dst) == n).
func (r *Reader) Fixed(field string, dst []byte) {
	if v := r.take(field, len(dst)); v != nil {
		copy(dst, v)
	}
}

// Slice returns the next n bytes without copying.
func (r *Reader) Slice(field string, n int) []byte { return r.take(field, n) }

// Count reads a uint32 element count and checks it against max and against
// the remaining input at elemSize bytes per element, so that a hostile count
// can never cause a large allocation.
func (r *Reader) Count(field string, max, elemSize int) int {
	n := r.U32(field + " count")
	if r.err != nil {
		return 0
	}
	if uint64(n) > uint64(max) {
		r.Fail("%s: count %d exceeds maximum %d", field, n, max)
		return 0
	}
	if uint64(n)*uint64(elemSize) > uint64(len(r.b)) {
		r.Fail("%s: count %d needs %d bytes, have %d", field, n, uint64(n)*uint64(elemSize), len(r.b))
		return 0
	}
	return int(n)
}

// Header checks a message's type tag and version byte.
func (r *Reader) Header(tag, version uint8) {
	t := r.U8("type")
	v := r.U8("version")
	if r.err != nil {
		return
	}
	if t != tag {
		r.Fail("type tag %d, want %d", t, tag)
	} else if v != version {
		r.Fail("unsupported version %d, want %d", v, version)
	}
}

// Done checks that the whole input was consumed and returns the first error.
func (r *Reader) Done() error {
	if r.err == nil && len(r.b) != 0 {
		r.Fail("%d trailing bytes", len(r.b))
	}
	return r.err
}
