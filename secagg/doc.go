// Package secagg implements pairwise-mask secure aggregation: the protocol of
// Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving
// Machine Learning" (CCS 2017), in its active-adversary variant (with the
// ConsistencyCheck round and signed key adverts), over the sparse random neighbour graph of
// Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic
// Overhead" (CCS 2020, "SecAgg+"). The complete graph (Degree = Clients−1)
// is classic SecAgg.
//
// A round has five phases. Client and Server are pure state machines, one
// method per phase, with no I/O; messages are Go types with strict binary
// encodings (MarshalBinary / UnmarshalBinary):
//
//	phase                 client                     server
//	0 AdvertiseKeys       AdvertiseKeys → Advert     HandleAdvert, AdvertList
//	1 ShareKeys           ShareKeys → Shares         HandleShares, ForwardedShares
//	2 MaskedInput         [OpenShares,] MaskInput    HandleMaskedInput, ConsistencyRequest
//	                        → MaskedInput
//	3 ConsistencyCheck    CheckConsistency → sig     HandleSignature, UnmaskRequest
//	4 Unmasking           Unmask → UnmaskResponse    HandleUnmask, Aggregate
//
// OpenShares is optional: it makes every check MaskInput makes on the
// forwarded shares before the client commits to an input, so that a site
// can charge its privacy budget only for a round whose shares check out.
//
// Client u masks its input x_u ∈ Z_{2^b}^d as
//
//	y_u = x_u + PRG(b_u) + Σ_{v ∈ N(u), v sent shares} ±PRG(s_{u,v})   (+ if u < v)
//
// where b_u is a fresh self-mask seed and s_{u,v} a key agreed by X25519
// with neighbour v. Both b_u and u's mask-agreement secret are Shamir-shared
// (threshold t) among u's k neighbours. For the survivors the server
// reconstructs b_u; for clients that dropped after sharing keys it
// reconstructs the mask-agreement secret and removes their pairwise masks;
// the pairwise masks between survivors cancel. The server learns Σ x_u over
// the survivor set U3 and, under the conditions of "Security", nothing else.
//
// # Cryptography
//
//   - Key agreement: X25519 (RFC 7748) via crypto/ecdh; the all-zero shared
//     secret is refused. Two key pairs per client and round: one to seal
//     shares, one for masks, since the latter is revealed if the client drops.
//   - Key derivation: HKDF-SHA-256 (RFC 5869), info = purpose label, round
//     and both client identifiers.
//   - Share encryption: ChaCha20-Poly1305 (RFC 8439), associated data =
//     (round, sender, recipient, advert-set digest).
//   - Secret sharing: Shamir over the prime-order scalar field of
//     edwards25519 (filippo.io/edwards25519). The shared secrets are uniform
//     field elements; the X25519 key and the self-mask seed are derived from
//     them with HKDF, so they are exactly representable.
//   - Masks: AES-128-CTR keystream (NIST SP 800-38A), AES-NI accelerated.
//   - Identities: each client's long-term Ed25519 key is on a Roster that all
//     parties hold. Adverts and consistency messages are signed; signatures
//     are verified with one cofactored rule, in batches (internal/edsig).
//   - Quantization (Quantizer): clipping, unbiased stochastic rounding onto a
//     fixed-point grid with randomness from crypto/rand, sample-count weights,
//     and a range check that the sum of MaxClients inputs cannot wrap.
//
// # Security
//
// The adversary is a server that follows the protocol, or one that deviates
// arbitrarily, colluding with up to Corrupt clients (the honest-but-curious
// and active-adversary settings of Bonawitz et al. 2017, §6; SECURITY.md
// states the model and its limits). Against it the server learns the sum of
// the inputs of one survivor set U3 and nothing else about the honest
// clients' inputs: always on the complete graph, and on a sparse graph
// except with the probability bounded below. Each defence has a test
// (attack_*_test.go):
//
//   - Identities. Adverts and consistency signatures are Ed25519-signed
//     under the roster (Bonawitz et al. 2017, §6, the active-adversary
//     protocol), so the server cannot forge a client's keys or its consent.
//     Every message is bound to its round, and shares and signatures to the
//     advert set.
//   - One survivor set per round. A client signs one survivor set, and only
//     if it holds at least the consistency quorum max(t, ⌊(m+c)/2⌋+1), where
//     m clients advertised keys and c = Corrupt. Any two sets that reach the
//     quorum share more than c signers, hence an honest one, who signed only
//     one of them (Bonawitz et al. 2017, round ConsistencyCheck, with "t
//     signatures" strengthened to this majority bound). This holds only if c
//     is at least the true number of colluders: each client takes Corrupt
//     from its own configuration, never from the server; with an understated
//     c a server can show two sets, one with a victim and one without, and
//     collect both kinds of share of the victim.
//   - Self mask or mask key, never both. For each neighbour whose shares it
//     holds, a client reveals the self-mask share if the neighbour is in the
//     set it signed and the mask-key share if not (Bonawitz et al. 2017,
//     round Unmasking), and it answers each phase once.
//   - Opened only over a set it signed itself. A client reveals anything
//     only when every member of the set has signed that set, so a survivor's
//     self mask is removed only over a set that passed the survivor's own
//     checks: the set contains it, reaches the quorum and its MinSurvivors,
//     keeps Threshold of its share holders, names no neighbour whose shares
//     were withheld, and has a connected neighbour graph.
//   - Connected survivors. Pairwise masks cancel only inside a connected
//     part of the graph restricted to U3, so the sum of each part could be
//     opened on its own; clients refuse a disconnected U3. In a connected U3
//     every proper subset has a mask edge to another survivor, and no honest
//     client reveals the key of an edge between two survivors.
//   - A commitment to b_u in the advert lets the server detect a share
//     holder that reveals a wrong share.
//
// Sparse graphs (SecAgg+, Bell et al. 2020, with their random Harary graph)
// have even degree k: each client is joined to the k/2 nearest positions on
// each side of a ring whose order is a permutation seeded by the advert set.
// The odd-degree Harary graph also joins each client to the one half way
// round; through those chords a server without colluders could isolate two
// opposite arcs of survivors that still keep t neighbours each, and the
// connectivity check rules that out whatever the degree. Without colluders
// every survivor, having signed, keeps t > k/2 surviving neighbours, so no
// run of k/2 ring positions next to it is empty of survivors, and U3 is
// connected even before the check. With
// colluders, whose mask keys the server holds, two events break the
// guarantee: an honest client has t colluding neighbours, who can rebuild
// its secrets; or colluders bridge two parts of the honest survivors (an
// honest survivor next to a run of k/2 positions holding no honest survivor
// keeps at most k/2 other surviving neighbours, so it signs only if t − k/2
// colluders sit in the run). With c colluders among the n clients, each
// event is bounded by a union bound over the clients:
//
//	n · Pr[Hypergeometric(n−1, c, k) ≥ t] + n · Pr[Hypergeometric(n−1, c, k/2) ≥ t − k/2]
//
// (Plan.SecurityFailure). The server can leave adverts out, and colluders
// can advertise again, to try other graphs; Recommend keeps the bound at
// most 2^-80 per graph, so that after 2^40 graphs tried it is still at most
// 2^-40 (Plan.GrindingBits, Plan.SecurityFailureGround). The bound assumes
// the advert set holds the n clients given to Recommend: leaving adverts out
// also raises the colluders' share of the rest, which a client's
// MinSurvivors limits. Parameters chosen by hand carry no bound. The
// complete graph has no graph to choose and no such event; there Corrupt
// must be below Threshold.
//
// What is not protected: the sum itself, which is what differential privacy
// (package dp) is for; and the membership of the survivor set. Code is
// constant time where the standard library and edwards25519 are; signature
// verification, the graph and Lagrange coefficients handle public values in
// variable time; quantization uses floating point and is not constant time.
//
// # Dropouts
//
// A round completes with the exact sum of the survivors' inputs (the
// clients whose masked inputs the server received) when at least
// Threshold+1 clients advertise and share keys, the survivor set passes
// every survivor's checks (above), every survivor signs it, and every
// secret that must be recovered keeps Threshold holders among the clients
// that unmask: the self-mask seed of each survivor, and the mask-agreement
// secret of each client that shared keys and then dropped. Otherwise a
// round among honest clients fails with ErrBelowThreshold and reveals
// nothing about the inputs.
//
// So clients may drop at any phase but one. A client that drops before
// sharing keys takes no part: no client masks against it. One that drops
// after sharing keys and before sending its masked input is removed: its
// neighbours reveal its mask-agreement secret. One that drops after signing
// only removes itself as a share holder. But a client that drops after
// sending its masked input and before signing fails the round: its input is
// in the server's sum, and nobody reveals its self-mask share over a set it
// did not sign.
//
// # Performance
//
// Masking costs k+1 AES-CTR expansions of d words, added with AVX2 on amd64.
// The server keeps one running sum of d words (inputs are added as they
// arrive, straight from their encoding), so its memory is O(d) whatever the
// number of clients, and expands the remaining masks split across all cores.
// Signatures are verified in batches (a client verifies every survivor's
// consistency signature in one batch); X25519 agreements, batches and long
// mask expansions use all cores on both sides, and the calls stay
// synchronous. Benchmarks in bench_test.go compare with raw AES-CTR
// keystream and a plain sum.
package secagg
