#include "ml/threads.h"

#include <Eigen/Core>

#include "common/status.h"

#ifdef P2P_ML_OPENBLAS
#include <cblas.h>
#endif

namespace p2p::ml {

void SetThreads(int n) {
  P2P_CHECK(n >= 1, "thread count {} < 1", n);
  Eigen::setNbThreads(n);
#ifdef P2P_ML_OPENBLAS
  openblas_set_num_threads(n);
#endif
}

int Threads() {
#ifdef P2P_ML_OPENBLAS
  return openblas_get_num_threads();
#else
  return Eigen::nbThreads();
#endif
}

}  // namespace p2p::ml
