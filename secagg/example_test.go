package secagg_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/fl-secure/fl-secure/secagg"
	"github.com/fl-secure/fl-secure/secagg/secaggtest"
)

// Five hospitals sum their counts of three diagnoses. Hospital 5 goes
// offline after sharing its keys; its neighbours reveal shares of its
// mask-agreement key, the server removes the masks it left behind, and the
// sum of the other four comes out exact. The server never sees one count.
func Example() {
	p := secagg.Params{Round: 1, Clients: 5, Threshold: 3, Degree: 4, Length: 3, Bits: 32}
	counts := [][]uint64{{12, 0, 3}, {7, 1, 0}, {30, 2, 9}, {4, 0, 1}, {99, 99, 99}}

	// Each hospital holds its long-term identity key; everyone holds the roster.
	keys := make([]ed25519.PrivateKey, p.Clients)
	public := make([]ed25519.PublicKey, p.Clients)
	for i := range keys {
		public[i], keys[i], _ = ed25519.GenerateKey(nil)
	}
	roster, _ := secagg.NewRoster(public)
	server, _ := secagg.NewServer(p, roster)
	clients := make([]*secagg.Client, p.Clients)
	for i := range clients {
		clients[i], _ = secagg.NewClient(p, uint32(i+1), keys[i], roster, nil)
	}

	for _, c := range clients { // AdvertiseKeys
		a, _ := c.AdvertiseKeys()
		server.HandleAdvert(a)
	}
	list, _ := server.AdvertList()
	for _, c := range clients { // ShareKeys
		s, _ := c.ShareKeys(list)
		server.HandleShares(s)
	}
	forwarded, _ := server.ForwardedShares()
	for i, c := range clients[:4] { // MaskedInputCollection: hospital 5 is gone
		m, _ := c.MaskInput(forwarded[c.ID()], counts[i])
		server.HandleMaskedInput(m)
	}
	check, _ := server.ConsistencyRequest()
	for _, c := range clients[:4] { // ConsistencyCheck
		sig, _ := c.CheckConsistency(check)
		server.HandleSignature(sig)
	}
	unmask, _ := server.UnmaskRequest()
	for _, c := range clients[:4] { // Unmasking
		r, _ := c.Unmask(unmask)
		server.HandleUnmask(r)
	}
	sum, err := server.Aggregate()
	fmt.Println("survivors:", server.Survivors())
	fmt.Println("sum:", sum, err)
	// Output:
	// survivors: [1 2 3 4]
	// sum: [53 3 13] <nil>
}

// When too many hospitals drop before sending their masked inputs, the round
// fails with ErrBelowThreshold and nothing but the list of participants has
// been revealed.
func Example_belowThreshold() {
	p := secagg.Params{Round: 2, Clients: 5, Threshold: 3, Degree: 4, Length: 3, Bits: 32}
	counts := [][]uint64{{12, 0, 3}, {7, 1, 0}, {30, 2, 9}, {4, 0, 1}, {1, 1, 1}}
	drop := []secaggtest.Phase{0, 0, secaggtest.AfterShares, secaggtest.AfterShares, secaggtest.AfterShares}
	res := secaggtest.Run(p, counts, drop, 1)
	fmt.Println("sum revealed:", res.Sum != nil)
	fmt.Println("below threshold:", errors.Is(res.Err, secagg.ErrBelowThreshold))
	fmt.Println(res.Err)
	// Output:
	// sum revealed: false
	// below threshold: true
	// secagg: too few clients remain: 2 masked inputs, consistency quorum is 3
}

// A hospital pays for each round it takes part in from a privacy budget. It
// charges the budget only once the shares forwarded to it check out: here
// the coordinator tampers with one share, OpenShares refuses the message,
// and no budget is spent. With the genuine message the hospital charges and
// masks its input.
func ExampleClient_OpenShares() {
	p := secagg.Params{Round: 3, Clients: 5, Threshold: 3, Degree: 4, Length: 3, Bits: 32}
	keys, roster := secaggtest.Identities(p.Clients, 1)
	server, _ := secagg.NewServer(p, roster)
	clients := make([]*secagg.Client, p.Clients)
	for i := range clients {
		clients[i], _ = secagg.NewClient(p, uint32(i+1), keys[i], roster, nil)
		a, _ := clients[i].AdvertiseKeys()
		server.HandleAdvert(a)
	}
	list, _ := server.AdvertList()
	for _, c := range clients {
		s, _ := c.ShareKeys(list)
		server.HandleShares(s)
	}
	forwarded, _ := server.ForwardedShares()

	budget := 10 // rounds this hospital may still take part in
	hospital := clients[0]
	genuine := forwarded[hospital.ID()]
	tampered := *genuine
	tampered.Shares = append([]secagg.SealedShare(nil), genuine.Shares...)
	tampered.Shares[1].Ciphertext[0] ^= 1
	for _, fwd := range []*secagg.ForwardedShares{&tampered, genuine} {
		if err := hospital.OpenShares(fwd); err != nil {
			fmt.Println("refused:", err)
			fmt.Println("budget left:", budget)
			continue
		}
		budget--
		m, err := hospital.MaskInput(fwd, []uint64{12, 0, 3})
		fmt.Println("masked input sent:", m != nil, err)
		fmt.Println("budget left:", budget)
	}
	// Output:
	// refused: secagg: protocol violation: client 1: sealed share from client 3 failed authentication
	// budget left: 10
	// masked input sent: true <nil>
	// budget left: 9
}
