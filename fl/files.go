package fl

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// maxElements bounds a tensor read from a file (2^28 values = 2 GiB as f64).
const maxElements = 1 << 28

func elements(shape []int) (int, error) {
	n := 1
	for _, s := range shape {
		if s < 0 || (s > 0 && n > maxElements/s) {
			return 0, fmt.Errorf("fl: shape %v has more than %d elements", shape, maxElements)
		}
		n *= s
	}
	return n, nil
}

// WriteNPY writes a 1-D array in NumPy's .npy format, version 1.0 (header
// padded so the data starts at a multiple of 64 bytes), as little-endian
// float32 (f32 true) or float64.
func WriteNPY(w io.Writer, v []float64, f32 bool) error {
	descr := "<f8"
	if f32 {
		descr = "<f4"
	}
	h := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }", descr, len(v))
	pad := 64 - (10+len(h)+1)%64
	if pad == 64 {
		pad = 0
	}
	h += strings.Repeat(" ", pad) + "\n"
	var buf bytes.Buffer
	buf.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&buf, binary.LittleEndian, uint16(len(h)))
	buf.WriteString(h)
	if _, err := w.Write(buf.Bytes()); err != nil {
		return err
	}
	return writeFloats(w, v, f32)
}

func writeFloats(w io.Writer, v []float64, f32 bool) error {
	size := 8
	if f32 {
		size = 4
	}
	b := make([]byte, 0, size*min(len(v), 1<<16))
	for i, x := range v {
		if f32 {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(x)))
		} else {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		}
		if len(b) == cap(b) || i == len(v)-1 {
			if _, err := w.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	return nil
}

var npyHeader = regexp.MustCompile(`^\{\s*'descr':\s*'([<|>][fi][48])',\s*'fortran_order':\s*(False|True),\s*'shape':\s*\(([0-9,\s]*)\),?\s*\}\s*$`)

// ReadNPY reads a .npy file (versions 1.0 to 3.0) of little-endian
// float32, float64, int32 or int64 values in C order, returning them as
// float64 with their shape.
func ReadNPY(r io.Reader) ([]float64, []int, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, nil, fmt.Errorf("fl: npy: reading magic: %w", err)
	}
	if string(pre[:6]) != "\x93NUMPY" {
		return nil, nil, errors.New("fl: npy: not a .npy file (bad magic)")
	}
	var hlen int
	switch pre[6] {
	case 1:
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return nil, nil, fmt.Errorf("fl: npy: header length: %w", err)
		}
		hlen = int(binary.LittleEndian.Uint16(l[:]))
	case 2, 3:
		var l [4]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return nil, nil, fmt.Errorf("fl: npy: header length: %w", err)
		}
		hlen = int(binary.LittleEndian.Uint32(l[:]))
	default:
		return nil, nil, fmt.Errorf("fl: npy: unsupported version %d.%d", pre[6], pre[7])
	}
	if hlen > 1<<20 {
		return nil, nil, fmt.Errorf("fl: npy: header of %d bytes", hlen)
	}
	h := make([]byte, hlen)
	if _, err := io.ReadFull(r, h); err != nil {
		return nil, nil, fmt.Errorf("fl: npy: header: %w", err)
	}
	m := npyHeader.FindSubmatch(bytes.TrimRight(h, " \n\x00"))
	if m == nil {
		return nil, nil, fmt.Errorf("fl: npy: unsupported header %q", truncate(string(h), 80))
	}
	descr := string(m[1])
	if descr[0] == '>' {
		return nil, nil, fmt.Errorf("fl: npy: big-endian %s data is not supported", descr)
	}
	if string(m[2]) == "True" {
		return nil, nil, errors.New("fl: npy: Fortran-order arrays are not supported")
	}
	var shape []int
	for _, f := range strings.Split(string(m[3]), ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, nil, fmt.Errorf("fl: npy: shape entry %q", f)
		}
		shape = append(shape, n)
	}
	n, err := elements(shape)
	if err != nil {
		return nil, nil, err
	}
	size := int(descr[2] - '0')
	data := make([]byte, n*size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, nil, fmt.Errorf("fl: npy: %d values announced: %w", n, err)
	}
	if extra, _ := r.Read(make([]byte, 1)); extra != 0 {
		return nil, nil, errors.New("fl: npy: data after the announced values")
	}
	return decodeFloats(data, descr[1:], n), shape, nil
}

func decodeFloats(b []byte, kind string, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		switch kind {
		case "f4":
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
		case "f8":
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		case "i4":
			out[i] = float64(int32(binary.LittleEndian.Uint32(b[4*i:])))
		case "i8":
			out[i] = float64(int64(binary.LittleEndian.Uint64(b[8*i:])))
		}
	}
	return out
}

// A Tensor is one named array of a safetensors file.
type Tensor struct {
	DType string // "F32" or "F64" when written; F32, F64, I32, I64 read
	Shape []int
	Data  []float64
}

type stHeader struct {
	DType   string `json:"dtype"`
	Shape   []int  `json:"shape"`
	Offsets [2]int `json:"data_offsets"`
}

// WriteSafetensors writes tensors in the safetensors format (an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte range, then the data), names in sorted order.
func WriteSafetensors(w io.Writer, tensors map[string]Tensor, metadata map[string]string) error {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	head := map[string]any{}
	if len(metadata) > 0 {
		head["__metadata__"] = metadata
	}
	off := 0
	for _, n := range names {
		t := tensors[n]
		size := 8
		switch t.DType {
		case "F32":
			size = 4
		case "F64":
		default:
			return fmt.Errorf("fl: safetensors: tensor %q has dtype %q, write F32 or F64", n, t.DType)
		}
		cnt, err := elements(t.Shape)
		if err != nil || cnt != len(t.Data) {
			return fmt.Errorf("fl: safetensors: tensor %q: shape %v for %d values", n, t.Shape, len(t.Data))
		}
		head[n] = stHeader{t.DType, t.Shape, [2]int{off, off + size*cnt}}
		off += size * cnt
	}
	hj, err := json.Marshal(head)
	if err != nil {
		return err
	}
	if pad := (8 - len(hj)%8) % 8; pad > 0 {
		hj = append(hj, bytes.Repeat([]byte(" "), pad)...)
	}
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(hj)))
	if _, err := w.Write(append(l[:], hj...)); err != nil {
		return err
	}
	for _, n := range names {
		t := tensors[n]
		if err := writeFloats(w, t.Data, t.DType == "F32"); err != nil {
			return err
		}
	}
	return nil
}

// ReadSafetensors reads a safetensors file, checking that the header's
// byte ranges are in order, do not overlap, match each dtype and shape,
// and cover the data exactly.
func ReadSafetensors(r io.Reader) (map[string]Tensor, map[string]string, error) {
	var l [8]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, nil, fmt.Errorf("fl: safetensors: header length: %w", err)
	}
	hl := binary.LittleEndian.Uint64(l[:])
	if hl < 2 || hl > 100<<20 {
		return nil, nil, fmt.Errorf("fl: safetensors: header length %d outside [2, 100 MiB]", hl)
	}
	hj := make([]byte, hl)
	if _, err := io.ReadFull(r, hj); err != nil {
		return nil, nil, fmt.Errorf("fl: safetensors: header: %w", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hj, &raw); err != nil {
		return nil, nil, fmt.Errorf("fl: safetensors: header is not a JSON object: %w", err)
	}
	var meta map[string]string
	type entry struct {
		name string
		h    stHeader
	}
	var entries []entry
	for n, v := range raw {
		if n == "__metadata__" {
			if err := json.Unmarshal(v, &meta); err != nil {
				return nil, nil, fmt.Errorf("fl: safetensors: metadata: %w", err)
			}
			continue
		}
		var h stHeader
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&h); err != nil {
			return nil, nil, fmt.Errorf("fl: safetensors: tensor %q: %w", n, err)
		}
		entries = append(entries, entry{n, h})
	}
	sort.Slice(entries, func(a, b int) bool { return entries[a].h.Offsets[0] < entries[b].h.Offsets[0] })
	out := map[string]Tensor{}
	pos := 0
	for _, e := range entries {
		size := map[string]int{"F32": 4, "F64": 8, "I32": 4, "I64": 8}[e.h.DType]
		if size == 0 {
			return nil, nil, fmt.Errorf("fl: safetensors: tensor %q has unsupported dtype %q", e.name, e.h.DType)
		}
		cnt, err := elements(e.h.Shape)
		if err != nil {
			return nil, nil, err
		}
		if e.h.Offsets[0] != pos || e.h.Offsets[1]-e.h.Offsets[0] != cnt*size {
			return nil, nil, fmt.Errorf("fl: safetensors: tensor %q: bytes [%d, %d) but %d expected at %d", e.name, e.h.Offsets[0], e.h.Offsets[1], cnt*size, pos)
		}
		buf := make([]byte, cnt*size)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, nil, fmt.Errorf("fl: safetensors: tensor %q data: %w", e.name, err)
		}
		kind := map[string]string{"F32": "f4", "F64": "f8", "I32": "i4", "I64": "i8"}[e.h.DType]
		out[e.name] = Tensor{DType: e.h.DType, Shape: e.h.Shape, Data: decodeFloats(buf, kind, cnt)}
		pos = e.h.Offsets[1]
	}
	if extra, _ := r.Read(make([]byte, 1)); extra != 0 {
		return nil, nil, errors.New("fl: safetensors: data after the last tensor")
	}
	return out, meta, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
