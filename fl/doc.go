// Package fl is fl-secure's learning layer: data sets (CSV with a named
// label column; the embedded breast-cancer and diabetes tables, provenance
// in datasets/README.md), stratified splits and site partitions (IID,
// Dirichlet label skew), federated feature standardization from summed
// statistics, models with flat parameter vectors (logistic, softmax and
// linear regression, a one-hidden-layer tanh MLP), local SGD with optional
// FedProx, clipped per-example gradient sums over a Poisson sample for
// DP-SGD, and evaluation (accuracy, ROC AUC, log loss, RMSE, R²).
//
// It does not know which secure mode carries its updates, and it imports
// neither protocol, secagg nor he.
//
// # Guarantees
//
// fl computes updates; the privacy guarantee depends on how they are
// noised and accounted, which the round code decides:
//
//   - Record level is sound only when a round's update is a sum of clipped
//     per-example gradients of one Poisson-sampled batch (ClippedGradientSum
//     at every site, noised in the aggregate): one DP-SGD step over the union
//     of the sites' data, accounted as the subsampled Gaussian with that
//     rate.
//   - Several local steps per round (LocalSGD) give record-level DP only if
//     each hospital adds full DP-SGD noise at every local step and accounts
//     for it in its own ledger; otherwise the whole update must be clipped
//     and the guarantee is client level. Multi-step local training with
//     noise only in the aggregate never gives record-level DP.
//
// Shuffling, partitioning, local SGD's batch order and the MLP's initial
// weights use math/rand/v2 with a caller's seed: they simulate data or pick
// public values, never produce secrets, and no guarantee relies on them. Record sampling for DP-SGD uses the
// dp package's CSPRNG.
//
// Model and update files: NumPy .npy (read v1–v3, f4/f8/i4/i8; written
// v1.0) and safetensors (F32/F64/I32/I64 read, F32/F64 written), with
// strict size checks, so a hospital training with PyTorch or scikit-learn
// can hand fl-secure its update.
//
// The federated round itself lives in package protocol.
package fl
