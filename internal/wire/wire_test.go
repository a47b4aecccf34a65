package wire

import (
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	w := NewWriter(0)
	w.U8(7)
	w.U8(1)
	w.U32(0xdeadbeef)
	w.U64(1 << 40)
	w.Bytes([]byte("abc"))
	copy(w.Extend(3), "xyz")
	b := w.Finish()
	r := NewReader(b, "test: decoding X")
	r.Header(7, 1)
	if r.U32("a") != 0xdeadbeef || r.U64("b") != 1<<40 {
		t.Fatal("integers")
	}
	var f [3]byte
	r.Fixed("c", f[:])
	if string(f[:]) != "abc" || string(r.Slice("d", 3)) != "xyz" {
		t.Fatal("bytes")
	}
	if err := r.Done(); err != nil {
		t.Fatal(err)
	}
}

func TestErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		b    []byte
		read func(r *Reader)
		want string
	}{
		{[]byte{1}, func(r *Reader) { r.U32("sender") }, "sender: truncated: need 4 bytes, have 1"},
		{[]byte{2, 1}, func(r *Reader) { r.Header(1, 1) }, "type tag 2, want 1"},
		{[]byte{1, 9}, func(r *Reader) { r.Header(1, 1) }, "unsupported version 9"},
		{[]byte{0, 0, 0, 5, 1}, func(r *Reader) { r.Count("shares", 100, 4) }, "shares: count 5 needs 20 bytes, have 1"},
		{[]byte{0, 1, 0, 0}, func(r *Reader) { r.Count("ids", 100, 4) }, "ids: count 65536 exceeds maximum 100"},
		{[]byte{1, 2}, func(r *Reader) { r.U8("x") }, "1 trailing bytes"},
	} {
		r := NewReader(tc.b, "test: decoding X")
		tc.read(r)
		err := r.Done()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "test: decoding X: ") {
			t.Errorf("%x: err = %v, want %q", tc.b, err, tc.want)
		}
	}
	// After the first error every read returns zero values.
	r := NewReader(nil, "m")
	if r.U64("a") != 0 || r.U8("b") != 0 || r.Slice("c", 1) != nil || r.Count("d", 1, 1) != 0 {
		t.Fatal("reads after an error returned data")
	}
	if !strings.Contains(r.Err().Error(), "a: truncated") {
		t.Fatalf("first error not kept: %v", r.Err())
	}
}
