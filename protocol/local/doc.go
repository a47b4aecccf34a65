// Package local runs a whole federation in one process: the real
// protocol.Coordinator and one real protocol.Site per hospital, joined by
// the in-memory transport (Coordinator.ConnectInMemory, Site.RunOn), so
// that a simulation goes through exactly the session code, checks,
// budgets and ledgers of a federation over the network. Only the
// transport and the certificates differ (see protocol's "Transport").
//
// Simulate is fl-secure simulate: it loads and splits a data set among
// simulated hospitals, provisions kits under the run directory, runs the
// federation (secagg, he or plain; record or client level; with or
// without DP; with simulated dropouts) and the comparison rows of its
// closing table. PlanSecAgg and SecAggPlan.Run are fl-secure secagg: bare
// secure-aggregation rounds among sites holding random weighted updates,
// with sites dropping at random phases, every opened sum checked against
// the exact sum of the survivors. Federate runs one federation over data
// already split (the accuracy-vs-ε benchmark); Baseline trains the
// table's reference rows.
//
// # Simulated faults
//
// A hospital offline in a round is disconnected before the round's
// cohort is gathered and reconnects for the next round it is online in:
// the coordinator never sees it in that round. A round that fewer sites
// than the minimum cohort could join would wait for sites to come back, as
// over the network; the simulation draws that round's dropouts again.
// In SecAgg a site drops by closing its session before its k-th engine
// message of a round, and reconnects for the next round.
//
// Seeds determine the data split, the dropouts and the simulated updates
// only: keys, masks, noise and rounding always come from crypto/rand.
package local
