#include "sync/membership/view_messages.h"

#include <cstring>

namespace p2p::sync::membership {
namespace {

constexpr size_t kFixedBytes = 8 + 8 + 8 + 4;  // base view, round, rank count

void PutU64(broker::Bytes& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}
void PutU32(broker::Bytes& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}
uint64_t GetLE(std::span<const std::byte> in, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{std::to_integer<uint8_t>(in[at + i])} << (8 * i);
  return v;
}

broker::Bytes Encode(uint64_t base, Round round, const std::vector<int>& ranks) {
  broker::Bytes out;
  out.reserve(kFixedBytes + 2 * ranks.size());
  PutU64(out, base);
  PutU64(out, round.epoch);
  PutU64(out, round.step);
  PutU32(out, static_cast<uint32_t>(ranks.size()));
  for (int r : ranks) {
    out.push_back(static_cast<std::byte>(r & 0xff));
    out.push_back(static_cast<std::byte>((r >> 8) & 0xff));
  }
  return out;
}

struct Decoded {
  uint64_t base = 0;
  Round round;
  std::vector<int> ranks;
};

Result<Decoded> Decode(std::span<const std::byte> body, int run_size, const char* what) {
  if (body.size() < kFixedBytes) {
    return DataLoss("{} body of {} bytes is shorter than its {}-byte header", what, body.size(),
                    kFixedBytes);
  }
  const uint64_t n = GetLE(body, 24, 4);
  if (n > static_cast<uint64_t>(run_size)) {
    return InvalidArgument("{} lists {} ranks in a run of {}", what, n, run_size);
  }
  if (body.size() != kFixedBytes + 2 * n) {
    return DataLoss("{} body is {} bytes; {} ranks need exactly {}", what, body.size(), n,
                    kFixedBytes + 2 * n);
  }
  Decoded d{GetLE(body, 0, 8), Round{GetLE(body, 8, 8), GetLE(body, 16, 8)}, {}};
  d.ranks.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    const int r = static_cast<int>(GetLE(body, kFixedBytes + 2 * i, 2));
    if (r >= run_size) return InvalidArgument("{} names rank {} in a run of {}", what, r, run_size);
    if (!d.ranks.empty() && r <= d.ranks.back()) {
      return InvalidArgument("{} ranks are not strictly ascending ({} after {})", what, r,
                             d.ranks.back());
    }
    d.ranks.push_back(r);
  }
  return d;
}

}  // namespace

broker::Bytes EncodeViewProposal(const ViewProposal& p) {
  return Encode(p.base_view, p.last_round, p.alive);
}
broker::Bytes EncodeViewInstall(const ViewInstall& i) {
  return Encode(i.base_view, i.resume_after, i.members);
}

Result<ViewProposal> DecodeViewProposal(std::span<const std::byte> body, int run_size) {
  P2P_ASSIGN_OR_RETURN(Decoded d, Decode(body, run_size, "VIEW_PROPOSE"));
  return ViewProposal{d.base, d.round, std::move(d.ranks)};
}
Result<ViewInstall> DecodeViewInstall(std::span<const std::byte> body, int run_size) {
  P2P_ASSIGN_OR_RETURN(Decoded d, Decode(body, run_size, "VIEW_INSTALL"));
  return ViewInstall{d.base, d.round, std::move(d.ranks)};
}

}  // namespace p2p::sync::membership
