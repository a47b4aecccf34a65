package secagg

import (
	"fmt"

	"github.com/fl-secure/fl-secure/internal/wire"
)

// ClaimedSender returns the round and the sender that an encoded
// client-to-server message (Advert, Shares, MaskedInput,
// ConsistencySignature or UnmaskResponse) names, reading only its header.
// A transport that authenticates its peers compares the sender with the
// peer's identifier before the message reaches the Server: one client must
// never answer a phase in another's name (the Server accepts the first
// message per sender and phase, so a forged one would crowd out the real
// one).
func ClaimedSender(b []byte) (round uint64, sender uint32, err error) {
	r := wire.NewReader(b, "secagg: reading a message header")
	tag := r.U8("type")
	v := r.U8("version")
	round = r.U64("round")
	sender = r.U32("sender")
	if r.Err() != nil {
		return 0, 0, r.Err()
	}
	switch tag {
	case tagAdvert, tagShares, tagMaskedInput, tagConsistencySignature, tagUnmaskResponse:
	default:
		return 0, 0, fmt.Errorf("secagg: message type %d is not sent by clients", tag)
	}
	if v != version {
		return 0, 0, fmt.Errorf("secagg: unsupported version %d, want %d", v, version)
	}
	return round, sender, nil
}
