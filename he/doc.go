// Package he is fl-secure's second protection mode: threshold CKKS
// aggregation. Hospitals encrypt their (noised) updates under a collective
// public key; the coordinator adds ciphertexts; only the sum is ever
// decrypted, by any t of the N hospitals together, and no single party —
// not the coordinator, not one hospital — holds a key that decrypts.
//
// It wraps github.com/tuneinsight/lattigo/v5 (CKKS, mhe); no lattigo type
// appears in its API, every message has fl-secure's own strict encoding,
// and every parameter is validated before lattigo, which panics on bad
// input, sees it.
//
// # Construction
//
//   - Parameters (Preset): ring dimension 2^12..2^15, one to four 60-bit
//     moduli, ternary secrets, σ = 3.2, each within the 128-bit bound on
//     log2(QP) of the Homomorphic Encryption Standard (109, 218, 438, 881
//     bits; tested). Updates are encoded in the coefficients (an addition
//     needs no slots), N − 64 values per ciphertext: the top 64
//     coefficients are zero guards (see "Range check"). Compact's
//     ciphertext of 4032 values is 65,536 bytes, 4.06× the float32 values.
//   - Setup, five messages per party, each relayed by the coordinator to
//     every party once every party has sent its own:
//     (1) Advert: a fresh nonce, an ML-KEM-768+X25519 HPKE key (RFC 9180,
//     crypto/hpke) and the party's MinContributors, signed with its Ed25519
//     identity over the group's parameters (preset, N, t, MaxAbsSum,
//     MaxDecryptions). The common reference string is SHA-256 over every
//     advert, so no one chooses the collective key's public polynomial,
//     and it names this run of setup; the group's MinContributors is the
//     largest advert's, fixed for the key's life.
//     (2) Commit: SHA-256, domain-separated, over the CRS, the party's id
//     and the reveal it is about to send, signed. (3) Reveal, sent only
//     once the party holds a signed commitment from every party: its share
//     of the collective public key (Mouchet, Troncoso-Pastoriza, Bossuat,
//     Hubaux, "Multiparty Homomorphic Encryption from Ring-Learning-with-
//     Errors", PETS 2021, §4.2) and a t-of-N Shamir sharing of its secret
//     key share (Mouchet, Bertrand, Hubaux, "An Efficient Threshold
//     Access-Structure for RLWE-Based Multiparty Homomorphic Encryption",
//     ePrint 2022/780), each share sealed to its recipient, signed.
//     Committing first is what stops the rogue-key attack, in which the
//     last party to reveal sets its share to p' − Σ(the others') for a p'
//     whose secret only it knows (commit-then-reveal as in Gennaro,
//     Jarecki, Krawczyk, Rabin, J. Cryptology 2007, §3). A reveal that does
//     not match its party's commitment is refused with a *SetupError naming
//     the party (CheckReveals lets the coordinator find it too).
//     (4) Finish computes the collective key locally — a client never takes
//     it from the coordinator — keeps the sum of its received shares, erases
//     its own key share, and sends its key-confirmation shares. (5) Confirm:
//     from the hash of the whole transcript every party derives the same
//     confirmation ciphertext of a known vector; the first t parties'
//     decryption shares must decrypt it, and every party's parity share
//     (a random vector of the dual of the Reed–Solomon code the threshold
//     shares must lie in) must cancel, so every t-subset decrypts alike. A
//     dealer whose Shamir shares do not match its public-key share or each
//     other is caught here, not in a training round (ErrKeyConfirmation).
//     Confirmation messages are signed over the transcript hash, so
//     parties shown different messages by the relay do not confirm. Setup
//     needs every party; a party that drops out of setup means setup
//     restarts without it.
//   - Round: Encrypt adds the client's DP noise (Noise; DPNoise uses
//     dp.GridGaussian), encodes, encrypts under the collective key, and
//     signs (round, context, client, ciphertexts). The context is a
//     32-byte digest of the terms the client was shown for the round (in
//     fl-secure, of its RoundStart: model, noise share, clip, grid, level,
//     floors, members). The Aggregator checks and adds submissions made
//     under the round's context and sends a request naming exactly t
//     decryptors and carrying every submission.
//   - Decryption: each named decryptor checks the request (below),
//     recomputes the sum itself, derives its additive share λ_j·s_j of the
//     secret for the named set, and key-switches the sum to the zero key
//     (Mouchet et al. 2021, §4.4) with smudging noise. Combine adds the t
//     shares to the sum's first component, decodes every coefficient and
//     checks it (Range check) before it returns anything.
//
// # Security
//
// In one sentence: he mode keeps the hospitals' updates confidential
// against an actively malicious coordinator that colludes with no
// hospital, and the collective key against malicious hospitals while the
// coordinator is honest; it does not keep one hospital's update from
// another hospital that takes part in decryption (decryptors see every
// submission, and a hospital can submit a scaled copy of another's earlier
// ciphertext as its own: TestLimitReplayOfAnotherHospitalsCiphertext), nor
// anything from a coordinator colluding with a hospital (that pair can
// recover the collective key from a single round) — wherever a hospital
// may be malicious, use secagg mode. Binding each ciphertext to its sender
// and round needs a proof of plaintext knowledge (see the estimate below).
//
// Adversary: the coordinator may deviate from the protocol; up to c
// hospitals may collude and deviate, where the threshold was chosen for
// them: 2t − N > c, that is t ≥ MinThreshold(N, c) = ⌊(N+c)/2⌋ + 1; the
// coordinator does not collude with a hospital that deviates, except where
// a rule below says it holds even then. Decryptors enforce, whatever the
// coordinator asks:
//
//   - one decryption per round per decryptor, and 2t − N > c, so any two
//     decrypting sets of t share at least 2t − N decryptors, one of them
//     honest: no ciphertext is decrypted twice (lattigo's security notes:
//     repeated decryptions leak the key), and no two sums of one round
//     (for instance with and without one hospital, whose update is their
//     difference) are both decrypted. This holds even for a coordinator
//     colluding with c hospitals that restore old copies of their state
//     and answer a round twice (TestAttackTwoSumsOneColluder); with t only
//     above N/2, the sets {1,2,5} and {3,4,5} of 5 parties, t = 3, share
//     only party 5, and one colluder suffices. (Such a coalition can still
//     recover the key with a malformed ciphertext, see "Range check"; this
//     rule closes the attack that needs none and passes every check.)
//   - every submission in the sum carries the context the decryptor holds
//     itself for the round — the terms it was shown, whether or not it
//     contributed — signed by its hospital: a coordinator that shows
//     hospitals different terms in one round (a large noise share to one,
//     which that hospital pays for as if every hospital added one, small
//     ones to the others) gets nothing decrypted
//     (TestDecryptShareChecksContext);
//   - a sum must hold at least MinContributors distinct hospitals'
//     submissions for the request's round, each signed by its hospital, and
//     the decryptor recomputes the sum from them: asking for one hospital's
//     own ciphertext to be decrypted is refused. MinContributors is the
//     group's, fixed at setup and kept in each party's saved state;
//     RestoreParty ignores the caller's value, so no restore lowers it;
//   - a key decrypts fewer than MaxDecryptions ciphertexts, even if the c
//     colluders reset their own counts: each decryptor stops at half of
//     it, so D ciphertexts decrypted need D·(t − c) answers from the N − c
//     honest decryptors, at most (N − c)·MaxDecryptions/2 in all, and
//     2t − N > c makes D < MaxDecryptions; then setup must run again.
//
// A refusal spends nothing: a decryptor records a round as decrypted only
// once every check has passed.
//
// Setup against an active coordinator or malicious hospitals: every
// message is signed; no party reveals before all N commitments are in;
// reveals are checked against commitments; key confirmation checks that
// the threshold shares match the public key; all parties confirm one
// transcript.
//
// # Range check
//
// Nothing proves that a submission is an honest encryption. A hospital can
// sign the pair (c0, c1) of its choice; decrypted, it adds c0 + c1·s to the
// sum, s the collective secret key. With c1 = 2^(logScale+8) the sum holds
// 256·s and whoever sees it rounds s out (TestAttackMalformedCiphertext-
// KeyRecovery). So the party that combines decryption shares (the
// coordinator) decodes all N coefficients of every decrypted ciphertext and
// returns nothing — ErrOutOfRange, naming the round — unless
//
//   - every value coefficient lies within the range an honest sum of c
//     contributions can reach (Range: MaxAbs + c·Grid + z·σ·√c, never
//     beyond MaxAbsSum), plus the CKKS error bound e;
//   - every coefficient past the round's values and every guard
//     coefficient lies within e of zero;
//   - with a Grid, every value lies within e of the grid, and what is
//     returned is the grid value itself.
//
// False alarms. An honest coefficient is Δ·(Σx + Σδ + Ση) + ρ + ν + φ: x
// the clipped inputs (|Σx| ≤ MaxAbs), δ the grid rounding (|δ| < γ each),
// η the DP noise — a discrete Gaussian on γZ, which is σ²-sub-Gaussian
// (Canonne, Kamath, Steinke, "The Discrete Gaussian for Differential
// Privacy", NeurIPS 2020), so the sum of c is cσ²-sub-Gaussian — ρ the
// encoders' rounding (|ρ| ≤ c/2), ν the summed ciphertexts' noise
// (Gaussian given the ternary u and s, variance at most 1.25·K·σ_e²·(1 +
// (4/3)·N·K): the 25% covers the spread of ||u||² and ||s||², whose
// relative standard deviation is about √(2/N)), and φ the t decryptors'
// smudging (Gaussians of σ_f). Each of η, ν and φ exceeds z of its σ with
// probability at most 2·e^(−z²/2). Combine allows z of each in each of the
// M = k·N coefficients of a round of k ciphertexts, so a false alarm needs
// one of at most 3M such tail events: probability at most 6M·e^(−z²/2),
// and z = √(2·(ln 6M + 40·ln 2)) makes that 2^−40 per round (z ≈ 8.7 for
// one Compact ciphertext, 9.8 for 2^26 values). A malicious decryptor that
// adds more noise than σ_f can make an honest round fail; it can also just
// not answer.
//
// What passes. The check cannot tell a malformed ciphertext whose effect
// stays inside the honest range from an honest one; how much such a
// ciphertext can carry is bounded as follows. Its key-dependent term is
// c1·s. A negacyclic rotation of s permutes its independent, symmetric
// coefficients (with signs), so every coefficient of c1·s has the same
// distribution. The 64 guards must decrypt to within e of zero; a term
// large enough to move a value to another grid point (the grid's half step
// must be at least 16·e, SetRange refuses finer grids) would have to pass
// all 64 guards at once: under the heuristic that the coefficients of c1·s
// behave like independent Gaussians of equal variance, that happens with
// probability below 2^−80, and a sparse c1 = a·X^k passes only if a·|s_i|
// ≤ e on 64 key coefficients, which bounds the term on the values by a few
// e. Rounded to the grid, the result is then exactly the honest sum plus
// the malformed submission's own chosen c0, independent of the key
// (TestMalformedCiphertextLimits) — though that c0, or a well-formed
// submission, can be a scaled copy of another hospital's earlier
// ciphertext, which exposes that hospital's input (above); what a
// malformed ciphertext learns about the key is
// whether its round was refused, one bit per round. Without a Grid a term
// below e stays in the low bits of the result, where it shows key
// coefficients round after round: give the grid whenever the inputs are on
// one (over the network they always are). The coordinator sees the
// decrypted sum before the check: a coordinator colluding with the
// malicious hospital learns c1·s at once, hence the sentence above.
//
// The stronger defence — not built. Only a zero-knowledge proof that each
// ciphertext is well formed stops a malformed ciphertext against a
// colluding coordinator: that c1 = u·p1 + e1 with u and e1 short (then
// c0 − u·p0 is a plaintext of the hospital's choosing and the decryption's
// key-dependent part is the honest u·e_pk + e1·s, which smudging covers).
// That is a proof of knowledge of a short (u, e1), 2N = 8192 integers, with
// one linear relation over R_q, q ≈ 2^60, N = 2^12: the relation of
// Lyubashevsky, Nguyen, Plançon, "Lattice-Based Zero-Knowledge Proofs and
// Applications: Shorter, Simpler, and More General", CRYPTO 2022. Their
// examples prove knowledge of a ternary witness of about 2^11 coefficients
// modulo a prime of about 32 bits in about 14 KB, with prover and verifier
// times in the tens of milliseconds (their figures as we read them; to be
// checked against the paper before they are relied on). Scaling the
// commitment to the witness, which dominates, linearly in the witness
// length (×4) and in log q (×~1.9), a proof per Compact ciphertext would be
// about 60–120 KB (1–2× the 64 KB ciphertext), take about 0.1–0.5 s to
// prove and 0.05–0.2 s to verify on one core; a d = 2^16 update (17
// ciphertexts) would cost each hospital seconds per round, and each
// decryptor, which verifies every submission, N times the verifications.
// Batching a submission's ciphertexts in one proof amortizes part of it.
//
// Smudging. Li and Micciancio (EUROCRYPT 2021) recover CKKS keys from
// decryption results, whose error depends on the key. Each decryptor adds
// a Gaussian of σ_f = B·√(D·N) to its share, where B bounds a coefficient
// of the summed ciphertexts' noise (z = 9.6 standard deviations of
// n·σ²(1 + (4/3)·N·K), see NewParams), D = MaxDecryptions and N the ring
// dimension. One honest decryptor's noise alone then bounds the Rényi
// divergence of order 2 between the real decryption results and ones
// without key-dependent error by D·N·B²/σ_f² ≤ 1, so an attack that
// recovers the key with probability p from public data does so with at
// most √(p·e) with all decryption results (probability preservation, Bai
// et al., ASIACRYPT 2015): a 128-bit problem keeps ≈ 63 bits
// (SecurityBits) against key recovery through decryptions. This is the
// differential-privacy view of IND-CPA^D in Li, Micciancio, Schultz,
// Sorrell (CRYPTO 2022). The smudging sampler is lattigo's rounded
// Gaussian on a blake2b XOF keyed from crypto/rand, truncated at 40σ_f
// (probability beyond 2^−1150 a coefficient). Key confirmation decrypts
// its vector like a round and counts against each party's budget.
//
// Decryption shares. Nothing proves that a decryption share was computed
// from its party's key either. A share names its round and its sender
// (ShareParty reads them from the header, so a transport that
// authenticates its peers drops a share sent in another party's name and
// blames the sender; CheckShare checks the rest of its format before
// Combine). A wrong share — all zero, or random — leaves −c1·λ_j·s_j
// (plus what it holds) in the sum, far outside the range: Combine withholds the result
// (ErrOutOfRange) exactly as for a malformed submission, and cannot tell
// the two apart. A decryptor that adds Δ·D to its honest share shifts the
// result by D, which passes when the sum stays in range: like a malicious
// contributor it can poison the sum, and it learns nothing from it
// (TestWrongDecryptionShares). Only a proof of correct key switching would
// stop either; none is built.
//
// Not protected: the sum itself (that is what DP noise is for); which
// hospitals took part; a malicious hospital's input within the range, or a
// decryptor's shift of the sum (only a proof would bound either; this is
// poisoning, not a leak); hospitals that collude with the coordinator
// (above); more colluding hospitals than the c that t was chosen for —
// 2t − N of them, with the coordinator, can have two sums of one round
// decrypted, and t of them can decrypt anything; liveness against a
// coordinator that drops or reorders setup messages, a party that deals
// bad shares (setup fails and must be run again; a dealer of inconsistent
// shares is caught but not named) or a decryptor that sends a wrong share
// (the round is withheld as out of range). Encryption and decryption are
// not constant time with respect to the plaintext in lattigo's encoder,
// nor is Combine's decoding; keys are handled by lattigo's ring
// arithmetic. Decryptors must persist their decrypted-rounds state across
// restarts: MarshalState / RestoreParty carry it with the threshold key
// share, the group's t and MinContributors and the setup commitments
// (bound by the transcript hash), and must be saved before a decryption
// share is sent. RestoreParty keeps the state's
// t and refuses a state whose t is below the caller's (for c colluders,
// MinThreshold(N, c)): a key made for fewer colluders than now assumed is
// not used.
//
// # Precision
//
// The scale is the largest power of two with MaxAbsSum·Δ below Q/2; the
// decrypted error is bounded by the ciphertext noise plus t decryptors'
// smudging over Δ (MaxError): for Compact with 5 parties, t = 3 and the
// default 2^20 decryptions, scale 2^48 and max error 4.4e-5. CKKS rounding
// and smudging come after the clients' DP noise and are post-processing:
// they cost accuracy, not privacy. With a Grid, Combine returns the exact
// grid sum.
//
// # Performance
//
// Setup sends five messages per party; the key confirmation adds, per
// party, one or two key-switch shares (a ciphertext's half each) and the
// combination of t + N of them, so setup stays linear in N. Combine decodes
// from the exact integers; with several moduli it reconstructs each
// coefficient by CRT (math/big). See BenchmarkSetup and BenchmarkHE.
//
// # Dropouts
//
// Hospitals that never submit are left out of the sum. Decryption
// succeeds while at least t key holders are online; with fewer, Request
// fails with ErrTooFewDecryptors and nothing is revealed. A named
// decryptor that vanishes after the request costs the round: the other
// decryptors will not help decrypt that round again.
package he
