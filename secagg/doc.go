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
//	2 MaskedInput         MaskInput → MaskedInput    HandleMaskedInput, ConsistencyRequest
//	3 ConsistencyCheck    CheckConsistency → sig     HandleSignature, UnmaskRequest
//	4 Unmasking           Unmask → UnmaskResponse    HandleUnmask, Aggregate
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
// the survivor set and nothing else.
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
// Against a server that follows the protocol, and against one that deviates
// arbitrarily while colluding with up to Corrupt clients, the server learns
// only the sum of at least Threshold clients' inputs (the
// honest-but-curious and active-adversary results of Bonawitz et al. 2017,
// §6; SECURITY.md states the model and its limits). The
// defences against an active server each have a test: forged adverts are
// refused (signatures over the roster); a client signs one survivor set per
// round and reveals shares only after a quorum of more than (|U1|+Corrupt)/2
// clients signed that same set, so two survivor sets can never both be
// accepted; for each neighbour a client reveals either the self-mask share or
// the mask-key share, never both, and it answers each phase once; every
// message is bound to its round. A commitment to b_u in the advert lets the
// server detect a client that reveals a wrong share.
//
// What is not protected: the sum itself, which is what differential privacy
// (package dp) is for; the membership of the survivor set; and, on a sparse
// graph, the choice of graph against a server that omits adverts to steer it
// (SECURITY.md, "Graph choice"). Code is constant time where the standard
// library and edwards25519 are; quantization uses floating point and is not.
//
// # Dropouts
//
// Clients may drop at any phase. A round completes with the exact sum of the
// survivors' inputs whenever every secret that must be recovered keeps at
// least Threshold share holders and a consistency quorum signs; otherwise it
// fails with ErrBelowThreshold and reveals nothing. Clients that drop before
// sharing keys simply take no part: no client masks against them.
//
// # Performance
//
// Masking costs k+1 AES-CTR expansions of d words, added with AVX2 on amd64.
// The server keeps one running sum of d words (inputs are added as they
// arrive, straight from their encoding), so its memory is O(d) whatever the
// number of clients, and expands the remaining masks split across all cores.
// Signatures are verified in batches; X25519 agreements, batches and long
// mask expansions use all cores on both sides, and the calls stay
// synchronous. Benchmarks in bench_test.go compare with raw AES-CTR
// keystream and a plain sum.
package secagg
