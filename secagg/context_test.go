package secagg_test

import (
	"errors"
	"testing"

	"github.com/fl-secure/fl-secure/secagg"
	"github.com/fl-secure/fl-secure/secagg/secaggtest"
)

// TestAttackSplitContext: a server shows clients 1 and 2 one set of terms
// for the round (for example a large noise share and the charge that goes
// with it) and clients 3 and 4 another (a small one). Params.Context binds
// the terms into every advert signature, so each group refuses the
// other's adverts in ShareKeys, before any input is masked.
func TestAttackSplitContext(t *testing.T) {
	p := secagg.Params{Round: 9, Clients: 4, Threshold: 3, Degree: 3, Length: 8, Bits: 32}
	keys, roster := secaggtest.Identities(p.Clients, 5)
	list := &secagg.AdvertList{Round: p.Round}
	var clients []*secagg.Client
	for i := range 4 {
		q := p
		q.Context[0] = 1 // terms A
		if i >= 2 {
			q.Context[0] = 2 // terms B
		}
		c, err := secagg.NewClient(q, uint32(i+1), keys[i], roster, secaggtest.Rand(uint64(i)))
		if err != nil {
			t.Fatal(err)
		}
		a, err := c.AdvertiseKeys()
		if err != nil {
			t.Fatal(err)
		}
		list.Adverts = append(list.Adverts, *a)
		clients = append(clients, c)
	}
	for i, c := range clients {
		if _, err := c.ShareKeys(list); !errors.Is(err, secagg.ErrProtocol) {
			t.Errorf("client %d shared keys with clients shown other terms: %v", i+1, err)
		}
	}
	// The same clients with the same terms complete the step.
	list = &secagg.AdvertList{Round: p.Round}
	clients = clients[:0]
	for i := range 4 {
		q := p
		q.Context[0] = 1
		c, _ := secagg.NewClient(q, uint32(i+1), keys[i], roster, secaggtest.Rand(uint64(i)))
		a, _ := c.AdvertiseKeys()
		list.Adverts = append(list.Adverts, *a)
		clients = append(clients, c)
	}
	for i, c := range clients {
		if _, err := c.ShareKeys(list); err != nil {
			t.Errorf("client %d: %v", i+1, err)
		}
	}
}
