// Package he will own threshold CKKS aggregation through lattigo v5:
// parameter presets at 128-bit security, packing of long vectors, collective
// key generation, t-of-N threshold decryption with smudging noise sized
// against the Li–Micciancio IND-CPA-D attack, and serialization, behind
// fl-secure's own types (no lattigo type in its API).
//
// Not built yet.
package he
