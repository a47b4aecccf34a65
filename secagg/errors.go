package secagg

import (
	"errors"
	"fmt"
)

// ErrBelowThreshold is returned (wrapped) when too few clients remain for a
// round to complete without revealing more than the sum. A round that fails
// with it has revealed nothing but which clients took part.
var ErrBelowThreshold = errors.New("secagg: too few clients remain")

// ErrProtocol is wrapped by errors that show a peer deviating from the
// protocol: forged or missing signatures, inconsistent views, messages out of
// order or for another round. Callers should treat the round as aborted and
// report the peer.
var ErrProtocol = errors.New("secagg: protocol violation")

// BadShareError reports a sealed share that its recipient could not open:
// either its sender sealed garbage or the server altered it in transit. A
// transport that trusts its server may hold the sender responsible; the
// recipient cannot tell the two apart.
type BadShareError struct {
	Recipient, Sender uint32
	Reason            string
}

func (e *BadShareError) Error() string {
	return fmt.Sprintf("%v: client %d: sealed share from client %d %s", ErrProtocol, e.Recipient, e.Sender, e.Reason)
}

// Unwrap makes a BadShareError match ErrProtocol.
func (e *BadShareError) Unwrap() error { return ErrProtocol }
