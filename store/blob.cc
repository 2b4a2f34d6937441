#include "store/blob.h"

#include <bit>
#include <cstring>

namespace p2p::store {
namespace {

// Blobs are little-endian on the wire and the floats are copied as they sit in memory.
static_assert(std::endian::native == std::endian::little,
              "store/blob.cc assumes a little-endian host; add byte swapping to port it");

constexpr char kMagic[4] = {'P', '2', 'P', 'F'};

}  // namespace

Result<uint32_t> ParseBlobHeader(std::string_view blob) {
  if (blob.size() < kBlobHeaderBytes) {
    return DataLoss("not a p2ptrain blob: {} bytes, shorter than the {}-byte header", blob.size(),
                    kBlobHeaderBytes);
  }
  if (std::memcmp(blob.data(), kMagic, sizeof kMagic) != 0) {
    return InvalidArgument("not a p2ptrain blob: bad magic (expected \"P2PF\")");
  }
  const auto version = static_cast<uint8_t>(blob[4]);
  if (version != kBlobVersion) {
    return InvalidArgument("p2ptrain blob version {}, this build reads version {}", version,
                           kBlobVersion);
  }
  if (blob[5] != 0 || blob[6] != 0) return InvalidArgument("p2ptrain blob: reserved bytes not 0");
  uint32_t count = 0;
  std::memcpy(&count, blob.data() + 7, sizeof count);
  if (count > kMaxBlobFloats) {
    return InvalidArgument("p2ptrain blob says {} floats, more than the limit {}", count,
                           kMaxBlobFloats);
  }
  const size_t data_bytes = blob.size() - kBlobHeaderBytes;
  if (data_bytes != static_cast<size_t>(count) * 4) {
    return DataLoss("p2ptrain blob says {} floats but holds {} bytes of data", count, data_bytes);
  }
  return count;
}

void WriteBlobHeader(uint32_t count, char* out) {
  std::memcpy(out, kMagic, sizeof kMagic);
  out[4] = static_cast<char>(kBlobVersion);
  out[5] = out[6] = 0;
  std::memcpy(out + 7, &count, sizeof count);
}

std::string EncodeBlob(std::span<const float> values) {
  P2P_CHECK(values.size() <= kMaxBlobFloats, "{} floats do not fit a blob (limit {})",
            values.size(), kMaxBlobFloats);
  std::string out(kBlobHeaderBytes + values.size_bytes(), '\0');
  WriteBlobHeader(static_cast<uint32_t>(values.size()), out.data());
  if (!values.empty())
    std::memcpy(out.data() + kBlobHeaderBytes, values.data(), values.size_bytes());
  return out;
}

Result<std::vector<float>> DecodeBlob(std::string_view blob) {
  P2P_ASSIGN_OR_RETURN(const uint32_t count, ParseBlobHeader(blob));
  std::vector<float> values(count);
  if (count > 0) std::memcpy(values.data(), blob.data() + kBlobHeaderBytes, count * sizeof(float));
  return values;
}

}  // namespace p2p::store
