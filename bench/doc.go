// Package bench will own the benchmark suite: scenarios, a plaintext
// baseline, tables (Markdown, CSV, JSON) and plots. It is never imported by
// the library.
//
// Not built yet: the secure-aggregation benchmarks live beside their code
// (go test -bench ./secagg ./internal/...).
package bench
