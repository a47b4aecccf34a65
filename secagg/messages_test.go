package secagg_test

import (
	"bytes"
	"encoding"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/fl-secure/fl-secure/secagg"
	"github.com/fl-secure/fl-secure/secagg/secaggtest"
)

var update = flag.Bool("update", false, "rewrite testdata/messages from a fresh round")

type message interface {
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

// decoders names every message type with a constructor for an empty value.
var decoders = map[string]func() message{
	"Advert":               func() message { return new(secagg.Advert) },
	"AdvertList":           func() message { return new(secagg.AdvertList) },
	"Shares":               func() message { return new(secagg.Shares) },
	"ForwardedShares":      func() message { return new(secagg.ForwardedShares) },
	"MaskedInput":          func() message { return new(secagg.MaskedInput) },
	"ConsistencyRequest":   func() message { return new(secagg.ConsistencyRequest) },
	"ConsistencySignature": func() message { return new(secagg.ConsistencySignature) },
	"UnmaskRequest":        func() message { return new(secagg.UnmaskRequest) },
	"UnmaskResponse":       func() message { return new(secagg.UnmaskResponse) },
}

// sampleMessages runs a small round and returns one genuine message of each
// type, encoded.
func sampleMessages(t *testing.T) map[string][]byte {
	p := secagg.Params{Round: 9, Clients: 5, Threshold: 3, Degree: 4, Length: 6, Bits: 32}
	s := newStepper(t, p)
	out := map[string][]byte{}
	enc := func(name string, m encoding.BinaryMarshaler) {
		if _, ok := out[name]; ok {
			return
		}
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	for _, c := range s.clients {
		a := must[*secagg.Advert](t)(c.AdvertiseKeys())
		enc("Advert", a)
		if err := s.srv.HandleAdvert(a); err != nil {
			t.Fatal(err)
		}
	}
	list := must[*secagg.AdvertList](t)(s.srv.AdvertList())
	enc("AdvertList", list)
	for _, c := range s.clients {
		sh := must[*secagg.Shares](t)(c.ShareKeys(list))
		enc("Shares", sh)
		if err := s.srv.HandleShares(sh); err != nil {
			t.Fatal(err)
		}
	}
	fwd := must[map[uint32]*secagg.ForwardedShares](t)(s.srv.ForwardedShares())
	enc("ForwardedShares", fwd[1])
	for i, c := range s.clients {
		m := must[*secagg.MaskedInput](t)(c.MaskInput(fwd[c.ID()], s.inputs[i]))
		enc("MaskedInput", m)
		if err := s.srv.HandleMaskedInput(m); err != nil {
			t.Fatal(err)
		}
	}
	creq := must[*secagg.ConsistencyRequest](t)(s.srv.ConsistencyRequest())
	enc("ConsistencyRequest", creq)
	for _, c := range s.clients {
		sig := must[*secagg.ConsistencySignature](t)(c.CheckConsistency(creq))
		enc("ConsistencySignature", sig)
		if err := s.srv.HandleSignature(sig); err != nil {
			t.Fatal(err)
		}
	}
	ureq := must[*secagg.UnmaskRequest](t)(s.srv.UnmaskRequest())
	enc("UnmaskRequest", ureq)
	enc("UnmaskResponse", must[*secagg.UnmaskResponse](t)(s.clients[0].Unmask(ureq)))
	return out
}

func TestWriteSeedCorpus(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/messages")
	}
	for name, b := range sampleMessages(t) {
		if err := os.WriteFile(filepath.Join("testdata", "messages", name+".bin"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// seeds loads the stored messages of one type; it fails if there are none.
func seeds(tb testing.TB, name string) [][]byte {
	tb.Helper()
	files, _ := filepath.Glob(filepath.Join("testdata", "messages", name+"-*.bin"))
	files = append(files, filepath.Join("testdata", "messages", name+".bin"))
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		tb.Fatalf("no seed messages for %s in testdata/messages", name)
	}
	return out
}

func TestRoundTripAndBadLengths(t *testing.T) {
	for name, b := range sampleMessages(t) {
		t.Run(name, func(t *testing.T) {
			m := decoders[name]()
			if err := m.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			again, err := m.MarshalBinary()
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("round trip changed the encoding (err %v)", err)
			}
			for i := 0; i < len(b); i++ {
				if err := decoders[name]().UnmarshalBinary(b[:i]); err == nil {
					t.Fatalf("truncation to %d of %d bytes accepted", i, len(b))
				}
			}
			for _, extra := range [][]byte{{0}, {1, 2, 3, 4}, make([]byte, 100)} {
				if err := decoders[name]().UnmarshalBinary(append(bytes.Clone(b), extra...)); err == nil {
					t.Fatalf("extension by %d bytes accepted", len(extra))
				}
			}
			// Every other type tag is refused.
			for tag := 0; tag < 256; tag++ {
				if tag == int(b[0]) {
					continue
				}
				c := bytes.Clone(b)
				c[0] = byte(tag)
				if err := decoders[name]().UnmarshalBinary(c); err == nil {
					t.Fatalf("type tag %d accepted", tag)
				}
			}
			c := bytes.Clone(b)
			c[1] = 2
			if err := decoders[name]().UnmarshalBinary(c); err == nil {
				t.Fatal("version 2 accepted")
			}
		})
	}
}

func TestStoredSeedsStillDecode(t *testing.T) {
	for name := range decoders {
		for _, b := range seeds(t, name) {
			if err := decoders[name]().UnmarshalBinary(b); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

func TestHostileCounts(t *testing.T) {
	// A count that claims more elements than the input holds, or more than
	// the protocol allows, is refused before any allocation.
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"AdvertList", append([]byte{2, 1, 0, 0, 0, 0, 0, 0, 0, 9}, 0xff, 0xff, 0xff, 0xff)},
		{"MaskedInput", append([]byte{5, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, 32}, 0x7f, 0xff, 0xff, 0xff)},
		{"UnmaskRequest", append([]byte{8, 1, 0, 0, 0, 0, 0, 0, 0, 9}, 0, 1, 0, 1)},
		{"MaskedInput", append([]byte{5, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, 16}, 0, 0, 0, 0)},
	} {
		if err := decoders[tc.name]().UnmarshalBinary(tc.b); err == nil {
			t.Errorf("%s: hostile message accepted", tc.name)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
}

func fuzzDecoder(f *testing.F, name string) {
	for _, b := range seeds(f, name) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := decoders[name]()
		if err := m.UnmarshalBinary(b); err != nil {
			if !reflect.ValueOf(m).Elem().IsZero() {
				t.Fatalf("failed decode left a partial value: %v", err)
			}
			return
		}
		again, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("re-encoding a decoded message: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatal("decode/encode round trip is not the identity")
		}
	})
}

func FuzzAdvert(f *testing.F)               { fuzzDecoder(f, "Advert") }
func FuzzAdvertList(f *testing.F)           { fuzzDecoder(f, "AdvertList") }
func FuzzShares(f *testing.F)               { fuzzDecoder(f, "Shares") }
func FuzzForwardedShares(f *testing.F)      { fuzzDecoder(f, "ForwardedShares") }
func FuzzMaskedInput(f *testing.F)          { fuzzDecoder(f, "MaskedInput") }
func FuzzConsistencyRequest(f *testing.F)   { fuzzDecoder(f, "ConsistencyRequest") }
func FuzzConsistencySignature(f *testing.F) { fuzzDecoder(f, "ConsistencySignature") }
func FuzzUnmaskRequest(f *testing.F)        { fuzzDecoder(f, "UnmaskRequest") }
func FuzzUnmaskResponse(f *testing.F)       { fuzzDecoder(f, "UnmaskResponse") }

// FuzzEncodedMaskedInput checks that the server's direct path for encoded
// masked inputs accepts and refuses exactly what decoding followed by
// HandleMaskedInput does, and adds the same values.
func FuzzEncodedMaskedInput(f *testing.F) {
	for _, b := range seeds(f, "MaskedInput") {
		f.Add(b)
	}
	p := secagg.Params{Round: 9, Clients: 5, Threshold: 3, Degree: 4, Length: 6, Bits: 32}
	s := newStepper(f, p)
	var adverts []*secagg.Advert
	for _, c := range s.clients {
		a, _ := c.AdvertiseKeys()
		adverts = append(adverts, a)
		s.srv.HandleAdvert(a)
	}
	list, _ := s.srv.AdvertList()
	var shares []*secagg.Shares
	for _, c := range s.clients {
		sh, _ := c.ShareKeys(list)
		shares = append(shares, sh)
	}
	_, roster := secaggtest.Identities(p.Clients, 5)
	fresh := func() *secagg.Server {
		srv, _ := secagg.NewServer(p, roster)
		for _, a := range adverts {
			srv.HandleAdvert(a)
		}
		srv.AdvertList()
		for _, sh := range shares {
			srv.HandleShares(sh)
		}
		srv.ForwardedShares()
		return srv
	}
	zero := make([]uint64, p.Length)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, bsrv := fresh(), fresh()
		errA := a.HandleEncodedMaskedInput(b)
		var m secagg.MaskedInput
		errB := m.UnmarshalBinary(b)
		if errB == nil {
			errB = bsrv.HandleMaskedInput(&m)
		}
		if (errA == nil) != (errB == nil) {
			t.Fatalf("direct path: %v; decode+handle: %v", errA, errB)
		}
		if errA == nil {
			// Both servers now refuse a second input from the same sender.
			again := &secagg.MaskedInput{Round: m.Round, Sender: m.Sender, Bits: m.Bits, Vector: zero}
			if a.HandleMaskedInput(again) == nil || bsrv.HandleMaskedInput(again) == nil {
				t.Fatal("a second input from the same sender was accepted")
			}
		}
	})
}
