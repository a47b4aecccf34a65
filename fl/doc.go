// Package fl will own learning: datasets (CSV, the embedded clinical sets),
// partitioners (IID, Dirichlet non-IID), built-in models with local
// (DP-)SGD, FedAvg arithmetic, evaluation, and .npy / safetensors I/O.
//
// It must not know which secure mode is used. Not built yet.
package fl
