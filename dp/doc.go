// Package dp is differential privacy for fl-secure: clipping, exact integer
// noise, the noise each client adds under secure aggregation, the RDP and
// PLD accountants and their calibration, and the signed privacy ledger that
// enforces a budget. It does not import secagg, he or protocol; they call it.
//
// # Neighbouring relation and level
//
// Every guarantee is stated for a neighbouring relation: AddRemove (one
// record, or one hospital's whole contribution, is added or removed; the
// default) or ReplaceOne (one is replaced; the sensitivity of a clipped sum
// doubles, so the noise multiplier is halved before accounting). ReplaceOne
// with Poisson sampling is refused with ErrUnsupported: neither accountant
// here has a tight analysis of it (dp_accounting refuses it too).
// ClientLevel entries protect a hospital's whole update (clip the update,
// sample every site); RecordLevel entries protect one patient record
// (per-example clipping with SumClipped, local DP-SGD).
//
// # Noise
//
// DiscreteGaussian samples N_Z(0, σ²), P(x) ∝ exp(−x²/(2σ²)), for any
// rational σ², exactly, by Canonne, Kamath, Steinke, "The Discrete Gaussian
// for Differential Privacy" (NeurIPS 2020), Algorithm 3 (rejection from the
// discrete Laplace of scale t = ⌊σ⌋+1, accepting with probability
// exp(−(|y| − σ²/t)²/(2σ²))), Algorithm 2 (discrete Laplace) and Algorithm 1
// (Bernoulli(exp(−γ)) for rational γ). Every accept/reject decision compares
// integers: uniform integers come from Lemire's exact multiply-and-reject
// method, Bernoulli(a/b) is "uniform in [0, b) < a", and γ = n/d is split
// into ⌊n/d⌋ Bernoulli(e^−1) draws and one Bernoulli(exp(−(n mod d)/d)).
// 128-bit arithmetic covers σ² with small numerators and denominators
// (σ² = 10⁴ runs at about 5–8 million samples a second on one core);
// math/big covers the rest. The bits come from AES-256-CTR keyed from
// crypto/rand (see Sampler), rekeyed every 64 GiB.
//
// Floats never carry noise. GridGaussian rounds a float vector randomly to
// the grid γZ (γ a power of two) and adds γ·N_Z(0, (σ/γ)²), so the output is
// exactly a scaled discrete Gaussian around the rounded value; a float
// Gaussian sampler would leak through its low-order bits (Mironov, CCS
// 2012) and its timing (Jin et al., "Are We There Yet? Timing and
// Floating-Point Attacks on Differential Privacy Systems", S&P 2022).
// Rounding moves a vector by at most γ√d, which GridSensitivity adds to
// the clipping norm.
//
// # Distributed noise
//
// Distribute plans the distributed discrete Gaussian of Kairouz, Liu,
// Steinke (ICML 2021). With n clients, threshold t and c colluders, each
// client adds N_Z(0, σ_int²) with σ_int = σ/(γ√(t−c)), so the t−c honest
// survivors alone reach σ; colluders may subtract their own shares and
// clients beyond t−c only add noise. The sum of m = t−c such shares is
// (½z⁻²)-zCDP with
//
//	1/z² = l2² + 2·l1·τ + τ²·d,  l2 = Δ₂/(√m σ_int),  l1 = Δ₁/(√m σ_int),
//	τ = 10 Σ_{k=1}^{m−1} exp(−2π²σ_int²·k/(k+1))
//
// (KLS 2021, Thm. 1 and Prop. 14), where Δ₂ bounds the norm of the scaled,
// randomly rounded update: C/γ + √d, or with conditional rounding at bias β
// √((C/γ)² + d/4 + √(2 ln(1/β))(C/γ + √d/2)) (§4.1), and Δ₁ ≤ √d·Δ₂. z is
// DistributedNoise.NoiseMultiplier, the multiplier the ledger records with
// mechanism discrete_gaussian. γ is the smallest power of two for which
// n(C/γ + 1) + k√n·σ_int < 2^(b−1) with k = √(2 ln(2d/β_wrap)), so the sum
// wraps around Z_{2^b} with probability at most β_wrap (sub-Gaussian tail of
// the discrete Gaussian, CKS 2020 §2, where N_Z(0, σ²) is shown σ-sub-Gaussian, and a union bound over
// coordinates). A wraparound is post-processing: it costs accuracy, not
// privacy.
//
// # Accountants
//
// RDPAccountant: the Gaussian mechanism has RDP α/(2z²) (Mironov 2017,
// Prop. 7); the discrete Gaussian has the same bound for integer shifts
// (CKS 2020, Thm. 4). For Poisson sampling at rate q, RDP is log(A_α)/(α−1)
// (Mironov, Talwar, Zhang, "Rényi Differential Privacy of the Sampled
// Gaussian Mechanism", 2019, §3.3):
//
//	integer α:    A_α = Σ_{i=0}^{α} C(α,i) (1−q)^{α−i} q^i exp((i²−i)/(2z²))
//	fractional α: A_α = E_{x~N(0,z²)} [(1 − q + q·exp((2x−1)/(2z²)))^α]
//
// The integer sum is exact. MTZ's series for fractional α converge only
// polynomially when z is small, so the integral is evaluated by composite
// Gauss–Legendre quadrature (relative error below 1e-12, tested against the
// integer sums). Poisson-sampled discrete Gaussians are refused: zCDP alone
// does not carry MTZ's subsampling analysis. Composition adds curves
// (Mironov 2017, Prop. 1) and conversion to (ε, δ) is CKS 2020, Prop. 12:
//
//	ε = min_α  r(α) + log((α−1)/α) − (log δ + log α)/(α−1).
//
// Orders are dp_accounting's 156; fractional orders that cannot beat the
// best ε (using r(α) ≥ r(⌊α⌋), Mironov 2017 Prop. 9) are skipped, which
// changes the work, never the answer.
//
// PLDAccountant: unsampled Gaussian rounds compose in closed form (their
// privacy loss is N(μ, 2μ), μ = Σ 1/(2z²); δ(ε) by Balle and Wang, ICML
// 2018, Thm. 8). Subsampled rounds use both dominating pairs of
// add-remove (Zhu, Dong, Wang, AISTATS 2022), discretized pessimistically by
// connect-the-dots (Doroshenko et al., PETS 2022) on a grid of step 1e-4
// (widened by powers of two when the composition would exceed 2^18 points),
// self-composed by one FFT each way (gonum dsp/fourier) inside a Chernoff
// window, with every truncation moving mass up or to +∞. ε is found by
// bisection on δ(ε) and rounded up. The PLD accountant covers the Gaussian
// mechanism only.
//
// Calibrate finds the smallest noise multiplier meeting (ε, δ) by a
// bracketing search that always returns a multiplier whose ε is at most the
// target.
//
// # Ledger
//
// A Ledger is a JSON Lines file: an open entry fixing the owner's Ed25519
// key, the accountant, δ and the ε cap, then one charge entry per release
// with every parameter the accountant needs and the cumulative ε. Each
// line is one entry in canonical JSON, signed by the owner over a domain
// string and its canonical form, and fsync'ed before Charge returns.
// Charge refuses with ErrBudgetExceeded, writing nothing, if the cap would
// be passed.
//
// The ledger is a transparency log: its lines (without the newline) are
// the leaves of an RFC 6962 §2.1 Merkle tree (golang.org/x/mod/sumdb/tlog),
// and after every append the owner writes a signed C2SP tlog-checkpoint
// (https://c2sp.org/tlog-checkpoint) of the whole tree to
// <ledger>.checkpoint, durably (temporary file, fsync, rename, fsync of
// the directory). OpenLedger refuses a ledger shorter than that checkpoint
// (ErrLedgerTruncated) or whose first entries hash to another root
// (ErrLedgerForked), so a ledger cut short never resumes from a lower ε; a
// checkpoint behind a ledger that extends it (a crash between an append
// and its checkpoint) is signed anew. Checkpoints kept elsewhere (cosigned
// by witnesses) are what catch a ledger restored together with its
// checkpoint from an earlier copy; Ledger.ProveFrom gives the consistency
// proofs that CheckExtends verifies. An incomplete last line is reported as
// ErrTornLedger and never rewritten; RecoverLedger moves it aside.
// AuditLedger recomputes every ε from the recorded parameters and checks
// the tree against the checkpoint beside the ledger, those in its witness
// directory and those the auditor gives; given none kept elsewhere, it
// says that a rollback cannot be detected.
//
// A charge of distributed noise records its whole NoisePlan (release,
// threshold k, colluders c, cohort, clients, grid step, dimension, ring
// width, one site's σ, clip); PlanCharge derives its multiplier with
// Distribute from σ_site·√(k−c), and Charge and the audit refuse one whose
// multiplier the plan does not give. Client-level charges also record the
// cumulative per-patient ε (PatientEpsilon). Outcome entries mark a charge
// opened or unopened at no cost; the audit checks that each marks an
// earlier charge, once, and leaves ε unchanged.
//
// # Security
//
// Not constant time: the samplers' running time depends on the sample (it
// is a rejection sampler) and the big-integer path's on σ², so a party that
// times one client's noise generation learns something about that client's
// noise; fl-secure generates noise before any network exchange of the
// round, and a client's noise is never the only thing protecting a value
// that leaves it unmasked. Clipping, rounding and accounting use floats and
// are not constant time; they handle no secret beyond the update itself.
// Randomized rounding compares 53-bit uniforms with float fractional parts:
// rounding carries no privacy of its own (the norm bound is enforced after
// it), so this is not a floating-point attack surface.
package dp
