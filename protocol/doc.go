// Package protocol is the federated round: selection, budget gates, local
// training (through fl), clipping and noise (through dp), secure
// aggregation (secagg or he), the minimum-cohort rule, ledger entries and
// checkpoints. It holds no cryptography of its own.
//
// # One round
//
//  1. Sites that are online and whose own ledger accepts the round's charge
//     join; a site whose budget is spent refuses the round.
//  2. The coordinator's ledger must accept the charge too; otherwise the run
//     stops there (status budget-refused) before any site touches its data.
//  3. Fewer than MinCohort sites: nothing is opened and nothing is charged;
//     the coordinator waits for sites to come online, retries the round
//     without the sites that failed it, and stops after RoundAttempts paid
//     attempts or when the cohort cannot be reached.
//  4. Each site computes its vector: at record level the sum of its records'
//     clipped gradients at the global model (full-batch DP-SGD, Abadi et al.
//     2016 with sampling rate 1: one step over the union of the sites'
//     data); at client level a local-SGD update (optionally FedProx)
//     clipped as a whole.
//  5. Each site adds its share of the distributed discrete Gaussian noise,
//     sized by dp.PlanDistributed so that MinCohort − Colluders honest
//     sites alone reach the calibrated σ: in secagg mode on integers after
//     randomized rounding to the grid (wraparound bounded by dp.Distribute),
//     in he mode on the grid before CKKS encoding.
//  6. Only the sum is opened (SecAgg over the complete graph, or threshold
//     CKKS decryption by a majority of the sites).
//  7. The coordinator's and every participating site's ledgers record the
//     round (fsync'ed) before the model is updated; then a checkpoint
//     (safetensors, written atomically) is saved.
//
// # Guarantees and disclosures
//
// Record level: (ε, δ) for one patient record, add-remove, by the RDP
// accountant on the discrete Gaussian with the effective multiplier of
// Kairouz–Liu–Steinke; every round uses all records (rate 1), because
// Poisson subsampling is not accounted for integer noise (see dp). Client
// level: (ε, δ) for a hospital's whole contribution to each round with
// zero-out neighbours (the contribution replaced by zero; the hospital still
// takes part, and who takes part is public), which with few hospitals needs
// much more noise per unit of signal. It is not a statement about one
// patient at the same ε: one patient's records move a hospital's clipped
// update by up to 2C, worth the larger ε of dp.PatientEpsilon, which
// fl-secure dp plan and fl-secure budget report show beside it.
//
// ε covers everything a DP run releases. Before training, the statistics
// round releases the record count and each feature's (and for regression
// the label's) sum and sum of squares, every value clipped to public
// bounds (CoordinatorConfig.Ranges), through the same noised secure sum:
// a record's vector has an L2 bound each site computes from the round's
// length (fl.StatsBound), the release takes a share of the budget's zCDP ρ
// (CoordinatorConfig.StatisticsShare, dp.SplitCalibrate), and every ledger
// records it as round 0. Training uses only the noised statistics or
// public constants (PublicStatistics, Rows): the standardization, the
// learning rate's denominator and the ring's bound on a site's vector.
// Without DP the same round runs without noise and no ε is claimed.
//
// # What a site enforces
//
// Over the network a site trusts nothing from the coordinator that would
// weaken its own protection. Its minimum cohort, colluders, ε cap and
// attempts per round are its own (SiteConfig); a coordinator's value counts
// only where it is stricter. A site refuses a round with fewer members than
// its floor; builds its secagg parameters with its own colluder count (the
// consistency quorum) and survivor floor (secagg.Params.MinSurvivors), so
// its input is opened only over a survivor set of at least its floor that
// it signed itself; charges for floor − colluders honest noise shares;
// opens and checks the forwarded shares before it charges; computes its
// contribution before it joins, so that it refuses at Join rather than
// abandon a round it paid for; pays for at most MaxAttempts attempts of one
// training round or of the statistics release; refuses a statistics round
// without noise (unless AllowNoDP) or with bounds that are not finite;
// refuses a session not newer than the last it joined; and signs one
// statistics survivor set, ever (site-state.json). In DP runs it also
// witnesses the coordinator's ledger: it cosigns the ledger's checkpoint
// before each round, and after the last, only if it is signed by the
// roster's coordinator ledger key and extends the last one it cosigned,
// and refuses the round otherwise (witness.go).
//
// The coordinator binds every engine message to the site whose
// certificate carried it, asks for masked inputs only when the round can
// still reach the minimum cohort, leaves the sites that failed an attempt
// out of its retry, and stops after RoundAttempts paid attempts with an
// error that names them. SECURITY.md lists each rule with the test that
// attacks it.
//
// # Transport
//
// Rounds run one way: the Coordinator and its Sites, over gRPC with
// mutual TLS 1.3, or in one process over an in-memory transport
// (Coordinator.ConnectInMemory, Site.RunOn, CoordinatorConfig.InMemory)
// that replaces only the transport and the certificate: the session code
// after authentication is the same. Package protocol/local builds whole
// federations in one process this way for fl-secure simulate and fl-secure
// secagg, so the simulator exercises every rule of "What a site enforces"
// above. The coordinator evaluates a held test set (CoordinatorConfig.Test),
// averages the tail of the published models (AverageFrom) and times every
// round (RoundResult.Seconds, Summary.SetupSeconds); sites bring their own
// trainer through SiteConfig.Trainer.
package protocol
