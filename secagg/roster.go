package secagg

import (
	"crypto/ed25519"
	"fmt"

	"github.com/fl-secure/fl-secure/internal/edsig"
)

// Roster is the list of the clients' long-term Ed25519 identity keys, in
// identifier order: the key of client i is entry i−1. Every client and the
// server of a round hold the same roster, distributed out of band (the
// hospitals' provisioning). A Roster is immutable and may be shared by many
// rounds and goroutines; keys are decoded once.
type Roster struct {
	keys []*edsig.PublicKey
}

// NewRoster checks and decodes the identity keys.
func NewRoster(keys []ed25519.PublicKey) (*Roster, error) {
	if len(keys) < 1 || len(keys) > MaxClients {
		return nil, fmt.Errorf("secagg: roster has %d keys, want 1 to %d", len(keys), MaxClients)
	}
	r := &Roster{keys: make([]*edsig.PublicKey, len(keys))}
	for i, k := range keys {
		pk, err := edsig.ParsePublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("secagg: roster key of client %d: %w", i+1, err)
		}
		r.keys[i] = pk
	}
	return r, nil
}

// Len returns the number of clients in the roster.
func (r *Roster) Len() int { return len(r.keys) }

// Key returns the identity key of client id (1..Len).
func (r *Roster) Key(id uint32) ed25519.PublicKey {
	if id < 1 || int(id) > len(r.keys) {
		return nil
	}
	return r.keys[id-1].Bytes()
}

func (r *Roster) check(p Params) error {
	if r == nil {
		return fmt.Errorf("secagg: no roster")
	}
	if len(r.keys) != p.Clients {
		return fmt.Errorf("secagg: roster has %d keys, want Clients = %d", len(r.keys), p.Clients)
	}
	return nil
}
