#include "peer/memory_budget.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "common/format_bytes.h"

namespace p2p::peer {
namespace {

std::optional<uint64_t> MemAvailable() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  uint64_t kib = 0;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return std::nullopt;
}

// What RLIMIT_AS still allows: the limit minus the current virtual size (/proc/self/statm).
std::optional<uint64_t> AddressSpaceLeft() {
  rlimit limit{};
  if (getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return std::nullopt;
  std::ifstream statm("/proc/self/statm");
  uint64_t pages = 0;
  if (!(statm >> pages)) return std::nullopt;
  const uint64_t used = pages * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return limit.rlim_cur > used ? limit.rlim_cur - used : 0;
}

}  // namespace

int OptimizerStateBuffers(const ml::OptimizerOptions& o) {
  if (o.name == "adam" || o.name == "adamw") return 2;
  if (o.name == "rmsprop") return o.momentum > 0 ? 2 : 1;
  if (o.name == "adagrad") return 1;
  return o.momentum > 0 ? 1 : 0;  // sgd
}

std::optional<uint64_t> AvailableMemoryBytes() {
  const std::optional<uint64_t> physical = MemAvailable(), address_space = AddressSpaceLeft();
  if (physical && address_space) return std::min(*physical, *address_space);
  return physical ? physical : address_space;
}

Status CheckModelFitsMemory(const ml::ModelOptions& model, const ml::OptimizerOptions& optimizer,
                            std::optional<uint64_t> available) {
  P2P_ASSIGN_OR_RETURN(const size_t params, ml::Model::CountParams(model));
  const int buffers = 2 + OptimizerStateBuffers(optimizer);
  const double need = 4.0 * double(params) * buffers;
  if (!available || need <= double(*available)) return Status::Ok();
  return Unavailable(
      "model {} has {} parameters and needs at least {} (parameters, gradients and {} {} state "
      "buffer(s), 4 bytes per value) but only {} of memory is available to this process; use a "
      "smaller model{} or free memory",
      model.name, params, FormatBytes(need), buffers - 2, optimizer.name,
      FormatBytes(double(*available)), model.name == "mlp" ? " (--hidden)" : "");
}

}  // namespace p2p::peer
