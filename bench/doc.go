// Package bench is fl-secure's benchmark suite, run by `fl-secure bench`:
// secure aggregation (clients, update length, dropout rate, complete graph
// against SecAgg+), threshold CKKS, the DP samplers and accountants, whole
// rounds over gRPC with mutual TLS on loopback per mode, and model quality
// against ε on the embedded clinical data. Every scenario measures its
// plaintext baseline in the same process — a plain sum of the same
// vectors, a client's raw AES-CTR keystream, a float32 sum, crypto/rand
// words, a plain network round — and reports the ratio to it, with the
// time, process CPU, peak heap and bytes each client sends. Results go out
// as Markdown, CSV, JSON and PNG plots (gonum.org/v1/plot), with scaling
// exponents fitted by least squares on log–log data.
//
// Nothing in the library imports this package.
package bench
