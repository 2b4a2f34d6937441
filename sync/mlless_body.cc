#include "sync/mlless_body.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <numeric>

namespace p2p::sync {
namespace {
static_assert(std::endian::native == std::endian::little,
              "the wire format is little-endian; add byte swapping for big-endian hosts");
constexpr size_t kHeader = 4 + 4 + 1;  // samples, P, form
constexpr uint8_t kSparse = 0;
constexpr uint8_t kDense = 1;

void Put(broker::Bytes& out, size_t& at, const void* data, size_t n) {
  std::memcpy(out.data() + at, data, n);
  at += n;
}

uint32_t U32At(std::span<const std::byte> body, size_t at) {
  uint32_t v = 0;
  std::memcpy(&v, body.data() + at, 4);
  return v;
}

Status CheckFinite(std::span<const float> values) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) return DataLoss("mlless update value {} is not finite", i);
  }
  return Status::Ok();
}

}  // namespace

broker::Bytes EncodeMllessBody(const MllessUpdate& update, size_t p) {
  const size_t n = update.index.size();
  // A dense body costs 4P bytes, a sparse one 4 + 8n: send whichever is smaller.
  const bool dense = n == p || 4 + 8 * n > 4 * p;
  const auto p32 = static_cast<uint32_t>(p);
  const uint8_t form = dense ? kDense : kSparse;
  broker::Bytes out(kHeader + (dense ? 4 * p : 4 + 8 * n));
  size_t at = 0;
  Put(out, at, &update.samples, 4);
  Put(out, at, &p32, 4);
  Put(out, at, &form, 1);
  if (dense) {
    std::vector<float> all(p, 0.0f);
    for (size_t i = 0; i < n; ++i) all[update.index[i]] = update.value[i];
    Put(out, at, all.data(), 4 * p);
    return out;
  }
  const auto n32 = static_cast<uint32_t>(n);
  Put(out, at, &n32, 4);
  Put(out, at, update.index.data(), 4 * n);
  Put(out, at, update.value.data(), 4 * n);
  return out;
}

Result<MllessUpdate> DecodeMllessBody(std::span<const std::byte> body, size_t p) {
  if (body.size() < kHeader) {
    return DataLoss("mlless update of {} bytes is shorter than its {}-byte header", body.size(),
                    kHeader);
  }
  MllessUpdate update;
  update.samples = U32At(body, 0);
  const uint32_t claimed_p = U32At(body, 4);
  const auto form = static_cast<uint8_t>(body[8]);
  if (claimed_p != p) {
    return InvalidArgument("mlless update has {} coordinates but this model has {} parameters",
                           claimed_p, p);
  }
  const auto rest = body.subspan(kHeader);
  if (form == kDense) {
    if (rest.size() != 4 * p) {
      return DataLoss("dense mlless update holds {} bytes, not the {} of {} float32 values",
                      rest.size(), 4 * p, p);
    }
    update.value.resize(p);
    std::memcpy(update.value.data(), rest.data(), 4 * p);
    P2P_RETURN_IF_ERROR(CheckFinite(update.value));
    update.index.resize(p);
    std::iota(update.index.begin(), update.index.end(), 0u);
    return update;
  }
  if (form != kSparse) return DataLoss("mlless update has unknown form {}", form);
  if (rest.size() < 4) return DataLoss("sparse mlless update lacks its pair count");
  const uint32_t n = U32At(rest, 0);
  // Sizes are checked against the bytes present before anything is allocated.
  if (n > p || rest.size() != 4 + 8 * static_cast<size_t>(n)) {
    return DataLoss("sparse mlless update claims {} pairs for {} coordinates in {} bytes", n, p,
                    rest.size());
  }
  update.index.resize(n);
  update.value.resize(n);
  std::memcpy(update.index.data(), rest.data() + 4, 4 * size_t{n});
  std::memcpy(update.value.data(), rest.data() + 4 + 4 * size_t{n}, 4 * size_t{n});
  for (size_t i = 0; i < n; ++i) {
    if (update.index[i] >= p || (i > 0 && update.index[i] <= update.index[i - 1])) {
      return DataLoss("sparse mlless update: index {} at pair {} is not ascending below {}",
                      update.index[i], i, p);
    }
  }
  P2P_RETURN_IF_ERROR(CheckFinite(update.value));
  return update;
}

}  // namespace p2p::sync
