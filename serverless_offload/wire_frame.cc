#include "serverless_offload/wire_frame.h"

namespace p2p::offload::wire {

std::string Frame(const Magic& magic, const nlohmann::json& header) {
  std::string out(magic, 8);
  const std::string h = header.dump();
  Put(out, static_cast<uint32_t>(h.size()));
  out += h;
  return out;
}

bool HasMagic(std::string_view bytes, const Magic& magic) {
  return bytes.size() >= 8 && std::memcmp(bytes.data(), magic, 8) == 0;
}

Result<std::optional<Header>> TakeHeader(std::string_view buffer, const Magic& magic,
                                         const char* what) {
  if (buffer.size() < 12) return std::optional<Header>();
  if (!HasMagic(buffer, magic)) return DataLoss("{}: bad magic", what);
  const uint32_t len = Peek<uint32_t>(buffer, 8);
  if (len > kMaxHeaderBytes) return DataLoss("{}: header of {} bytes is too large", what, len);
  if (buffer.size() < 12 + size_t{len}) return std::optional<Header>();
  nlohmann::json header = nlohmann::json::parse(buffer.begin() + 12, buffer.begin() + 12 + len,
                                                nullptr, /*allow_exceptions=*/false);
  if (!header.is_object()) return DataLoss("{}: header is not a JSON object", what);
  return std::optional(std::make_pair(std::move(header), size_t{12} + len));
}

}  // namespace p2p::offload::wire
