#include "common/malloc_tuning.h"

#include <malloc.h>

#include <cstdlib>

namespace p2p {

void KeepFreedMemoryForReuse() {
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) {
    ::mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum on 64-bit
  }
  if (std::getenv("MALLOC_TRIM_THRESHOLD_") == nullptr) {
    ::mallopt(M_TRIM_THRESHOLD, 1 << 30);
  }
}

}  // namespace p2p
