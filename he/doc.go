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
//     needs no slots), N values per ciphertext; Compact's ciphertext of 4096
//     values is 65,536 bytes, 4× the float32 values.
//   - Setup (two messages per party, relayed by the coordinator):
//     (1) Advert: a fresh nonce and an ML-KEM-768+X25519 HPKE key (RFC 9180,
//     crypto/hpke), signed with the party's Ed25519 identity. The common
//     reference string is SHA-256 over every advert, so no one chooses the
//     collective key's public polynomial. (2) Setup: the party's share of
//     the collective public key (Mouchet, Troncoso-Pastoriza, Bossuat,
//     Hubaux, "Multiparty Homomorphic Encryption from Ring-Learning-with-
//     Errors", PETS 2021, §4.2), and a t-of-N Shamir sharing of its secret
//     key share (Mouchet, Bertrand, Hubaux, "An Efficient Threshold
//     Access-Structure for RLWE-Based Multiparty Homomorphic Encryption",
//     ePrint 2022/780), each share sealed to its recipient, all signed.
//     Finish computes the collective key locally — a client never takes it
//     from the coordinator — and keeps the sum of its received shares;
//     its own key share is erased. Setup needs every party; a party that
//     drops out of setup means setup restarts without it.
//   - Round: Encrypt adds the client's DP noise (Noise; DPNoise uses
//     dp.GridGaussian), encodes, encrypts under the collective key, and
//     signs (round, client, ciphertexts). The Aggregator checks and adds
//     submissions and sends a request naming exactly t decryptors and
//     carrying every submission.
//   - Decryption: each named decryptor checks the request (below),
//     recomputes the sum itself, derives the t-of-t additive share of the
//     secret for the named set, and key-switches the sum to the zero key
//     (Mouchet et al. 2021, §4.4) with smudging noise. Combine adds the t
//     shares to the sum's first component, which is then the plaintext.
//
// # Security
//
// Adversary: a passive (honest-but-curious) coordinator, and up to t−1
// colluding hospitals, who may also deviate. Beyond the passive model,
// decryptors enforce:
//
//   - one decryption per round per decryptor, and t > N/2, so any two
//     decrypting sets share a decryptor: no ciphertext is decrypted twice
//     (lattigo's security notes: repeated decryptions leak the key), and no
//     two sums of one round (for instance with and without one hospital)
//     are both decrypted;
//   - a sum must hold at least MinContributors (default t) distinct
//     hospitals' submissions for the request's round, each signed by its
//     hospital, and the decryptor recomputes the sum from them: asking for
//     one hospital's own ciphertext to be decrypted is refused;
//   - a key decrypts at most MaxDecryptions ciphertexts (each decryptor
//     stops at half of it; with t > N/2 fewer than MaxDecryptions happen in
//     all); then setup must run again.
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
// (probability beyond 2^−1150 a coefficient).
//
// Not protected: the sum itself (that is what DP noise is for); which
// hospitals took part; a malicious hospital's input (nothing proves a
// ciphertext encrypts a clipped update); hospitals that collude with the
// coordinator beyond t−1, who can decrypt anything; active attacks on setup
// by a coordinator that drops or reorders messages (it can stall setup, not
// bias the key: adverts and setup messages are signed, and the CRS hashes
// them all). Encryption and decryption are not constant time with respect
// to the plaintext in lattigo's encoder; keys are handled by lattigo's
// ring arithmetic. Decryptors must persist their decrypted-rounds state
// across restarts: MarshalState / RestoreParty carry it with the threshold
// key share, and must be saved before a decryption share is sent.
//
// # Precision
//
// The scale is the largest power of two with MaxAbsSum·Δ below Q/2; the
// decrypted error is bounded by the ciphertext noise plus t decryptors'
// smudging over Δ (MaxError): for Compact with 5 parties, t = 3 and the
// default 2^20 decryptions, scale 2^48 and max error 4.4e-5. CKKS rounding
// and smudging come after the clients' DP noise and are post-processing:
// they cost accuracy, not privacy.
//
// # Dropouts
//
// Hospitals that never submit are left out of the sum. Decryption
// succeeds while at least t key holders are online; with fewer, Request
// fails with ErrTooFewDecryptors and nothing is revealed. A named
// decryptor that vanishes after the request costs the round: the other
// decryptors will not help decrypt that round again.
package he
