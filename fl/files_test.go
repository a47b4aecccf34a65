package fl

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// npyBytes writes a .npy v1.0 file by hand from the format's specification
// (numpy.lib.format): magic, version, header length, an ASCII dict padded
// with spaces and a newline to a multiple of 64 bytes, then the data.
func npyBytes(descr, shape string, data []byte) []byte {
	h := "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }"
	for (10+len(h)+1)%64 != 0 {
		h += " "
	}
	h += "\n"
	b := []byte("\x93NUMPY\x01\x00")
	b = binary.LittleEndian.AppendUint16(b, uint16(len(h)))
	b = append(b, h...)
	return append(b, data...)
}

func TestNPYAgainstSpec(t *testing.T) {
	// 1.0 and −2.5 as little-endian float64.
	f8 := []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0x04, 0xc0}
	want := npyBytes("<f8", "(2,)", f8)
	var buf bytes.Buffer
	if err := WriteNPY(&buf, []float64{1, -2.5}, false); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("WriteNPY wrote\n%q\nwant\n%q", buf.Bytes(), want)
	}
	v, shape, err := ReadNPY(bytes.NewReader(want))
	if err != nil || len(v) != 2 || v[0] != 1 || v[1] != -2.5 || len(shape) != 1 || shape[0] != 2 {
		t.Errorf("ReadNPY: %v %v %v", v, shape, err)
	}
	// float32 [1, −2, 0.5] in a 3×1 array, as NumPy writes it.
	f4 := []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0, 0, 0, 0, 0x3f}
	v, shape, err = ReadNPY(bytes.NewReader(npyBytes("<f4", "(3, 1)", f4)))
	if err != nil || v[1] != -2 || v[2] != 0.5 || len(shape) != 2 || shape[0] != 3 {
		t.Errorf("float32 3×1: %v %v %v", v, shape, err)
	}
	good := npyBytes("<f4", "(3,)", f4)
	for name, b := range map[string][]byte{
		"truncated":  good[:len(good)-1],
		"trailing":   append(append([]byte{}, good...), 0),
		"big-endian": npyBytes(">f4", "(3,)", f4),
		"fortran":    bytes.Replace(good, []byte("False"), []byte("True "), 1),
		"magic":      append([]byte("\x92"), good[1:]...),
		"huge shape": npyBytes("<f4", "(1000000000, 1000000000)", f4),
	} {
		if _, _, err := ReadNPY(bytes.NewReader(b)); err == nil {
			t.Errorf("%s .npy accepted", name)
		}
	}
}

// stBytes writes a safetensors file by hand from its specification: an
// 8-byte little-endian header size, the JSON header, the data.
func stBytes(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), data...)
}

func TestSafetensorsAgainstSpec(t *testing.T) {
	data := []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0} // float32 1, −2
	file := stBytes(`{"__metadata__":{"round":"3"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, data)
	ts, meta, err := ReadSafetensors(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if w := ts["w"]; len(w.Data) != 2 || w.Data[0] != 1 || w.Data[1] != -2 || meta["round"] != "3" {
		t.Errorf("read %+v %v", ts, meta)
	}
	// Our writer's output reads back, and its header is the spec's shape.
	var buf bytes.Buffer
	in := map[string]Tensor{"b": {DType: "F64", Shape: []int{1}, Data: []float64{0.25}}, "a": {DType: "F32", Shape: []int{2, 1}, Data: []float64{1, -2}}}
	if err := WriteSafetensors(&buf, in, map[string]string{"format": "fl-secure"}); err != nil {
		t.Fatal(err)
	}
	hl := binary.LittleEndian.Uint64(buf.Bytes()[:8])
	if hl%8 != 0 || !strings.Contains(string(buf.Bytes()[8:8+hl]), `"a":{"dtype":"F32","shape":[2,1],"data_offsets":[0,8]}`) {
		t.Errorf("header %q", buf.Bytes()[8:8+hl])
	}
	out, _, err := ReadSafetensors(bytes.NewReader(buf.Bytes()))
	if err != nil || out["b"].Data[0] != 0.25 || out["a"].Data[1] != -2 {
		t.Errorf("round trip: %+v %v", out, err)
	}
	for name, b := range map[string][]byte{
		"overlap":   stBytes(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, data),
		"gap":       stBytes(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, data),
		"size":      stBytes(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, data),
		"trailing":  stBytes(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, data),
		"truncated": file[:len(file)-1],
		"dtype":     stBytes(`{"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}}`, data),
		"not json":  stBytes(`[1,2]`, data),
		"unknown":   stBytes(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}`, data),
		"huge":      binary.LittleEndian.AppendUint64(nil, 1<<40),
	} {
		if _, _, err := ReadSafetensors(bytes.NewReader(b)); err == nil {
			t.Errorf("%s safetensors accepted", name)
		}
	}
}

func FuzzReadNPY(f *testing.F) {
	f.Add(npyBytes("<f8", "(2,)", make([]byte, 16)))
	f.Add(npyBytes("<f4", "(3, 1)", make([]byte, 12)))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, _, err := ReadNPY(bytes.NewReader(b))
		if err != nil && v != nil {
			t.Fatal("values with an error")
		}
	})
}

func FuzzReadSafetensors(f *testing.F) {
	f.Add(stBytes(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, _, err := ReadSafetensors(bytes.NewReader(b))
		if err != nil && ts != nil {
			t.Fatal("tensors with an error")
		}
	})
}
