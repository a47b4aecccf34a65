package secagg

import (
	"encoding"
	"testing"
)

// ClaimedSender reads the sender of every client-to-server message, and
// refuses server-to-client messages and every truncated header.
func TestClaimedSender(t *testing.T) {
	const round, sender = 77, 5
	for name, m := range map[string]encoding.BinaryMarshaler{
		"advert":    &Advert{Round: round, Sender: sender},
		"shares":    &Shares{Round: round, Sender: sender},
		"masked":    &MaskedInput{Round: round, Sender: sender, Bits: 32, Vector: []uint64{1, 2}},
		"signature": &ConsistencySignature{Round: round, Sender: sender},
		"unmask":    &UnmaskResponse{Round: round, Sender: sender},
	} {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		r, s, err := ClaimedSender(b)
		if err != nil || r != round || s != sender {
			t.Errorf("%s: round %d, sender %d, %v", name, r, s, err)
		}
		for n := range 14 {
			if _, _, err := ClaimedSender(b[:n]); err == nil {
				t.Errorf("%s truncated to %d bytes accepted", name, n)
			}
		}
	}
	for name, m := range map[string]encoding.BinaryMarshaler{
		"advert list":    &AdvertList{Round: round},
		"forwarded":      &ForwardedShares{Round: round, Recipient: sender},
		"consistency":    &ConsistencyRequest{Round: round, Survivors: []uint32{sender}},
		"unmask request": &UnmaskRequest{Round: round, Survivors: []uint32{sender}},
	} {
		b, _ := m.MarshalBinary()
		if _, _, err := ClaimedSender(b); err == nil {
			t.Errorf("%s: a server message read as a client's", name)
		}
	}
}
