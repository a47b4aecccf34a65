package secagg

import "errors"

// ErrBelowThreshold is returned (wrapped) when too few clients remain for a
// round to complete without revealing more than the sum. A round that fails
// with it has revealed nothing but which clients took part.
var ErrBelowThreshold = errors.New("secagg: too few clients remain")

// ErrProtocol is wrapped by errors that show a peer deviating from the
// protocol: forged or missing signatures, inconsistent views, messages out of
// order or for another round. Callers should treat the round as aborted and
// report the peer.
var ErrProtocol = errors.New("secagg: protocol violation")
