// Package dp will own differential privacy for fl-secure: clipping, exact
// discrete Gaussian and Skellam samplers on a CSPRNG (Canonne, Kamath,
// Steinke 2020), calibration of the noise each client adds so that the sum
// over the honest survivors reaches the target σ, the RDP and PLD
// accountants, and the signed, hash-chained privacy ledger with its audit.
//
// It must not import secagg, he or protocol. Not built yet.
package dp
