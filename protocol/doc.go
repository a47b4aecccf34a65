// Package protocol will own the round as the coordinator and the hospital
// clients run it, independent of transport: selection, budget gates, local
// training (through fl), clipping and noise (through dp), secure aggregation
// (secagg or he), the minimum-cohort rule, ledger entries and checkpoints;
// with an in-memory transport for simulation and gRPC over mutual TLS.
//
// It holds no cryptography of its own. Not built yet: today's in-memory
// secagg round lives in internal/localround.
package protocol
