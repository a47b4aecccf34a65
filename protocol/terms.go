package protocol

import (
	"crypto/sha256"

	"google.golang.org/protobuf/proto"

	"github.com/fl-secure/fl-secure/protocol/wire"
)

// terms digests a RoundStart: the model, the noise every site adds, the
// clip, level, floors and members, and so the privacy each site charges
// for. It becomes the secagg session's Params.Context, which every advert
// signature binds, so a coordinator that shows sites different terms for
// one session (a large noise share to one site, charged accordingly, and
// small ones to the others) makes the session fail before any input is
// masked. The encoding is protobuf's deterministic one, which both sides
// of one wire version produce identically.
func terms(st *wire.RoundStart) [32]byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		panic("protocol: internal error: " + err.Error())
	}
	h := sha256.New()
	h.Write([]byte("fl-secure/protocol/v1 round terms\n"))
	h.Write(b)
	var d [32]byte
	h.Sum(d[:0])
	return d
}
