// Thread count for ml's dense linear algebra.
#pragma once

namespace p2p::ml {

// Sets how many threads matrix products may use: OpenBLAS's pool when p2p_ml is built with
// P2P_ML_OPENBLAS (default off), else Eigen's (which only threads in an OpenMP build).
// Process-wide; call at startup, before models run. Until it is called OpenBLAS uses its own
// default (OPENBLAS_NUM_THREADS, else every core). n >= 1 (P2P_CHECK).
void SetThreads(int n);

// The thread count products currently may use.
int Threads();

}  // namespace p2p::ml
