#include "broker/amqp_chunker.h"

#include <algorithm>
#include <cstring>

namespace p2p::broker::amqp {
namespace {

constexpr uint32_t kMagic = 0x41503250;  // "P2PA" read as little-endian u32
constexpr uint8_t kVersion = 1;
constexpr size_t kRecentDone = 1024;  // completed seqs remembered per sender for dedup

template <typename T>
void Put(std::byte*& p, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) *p++ = static_cast<std::byte>((v >> (8 * i)) & 0xff);
}

template <typename T>
T Get(const std::byte*& p) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i)
    v |= static_cast<T>(std::to_integer<uint8_t>(*p++)) << (8 * i);
  return v;
}

void WriteHeader(const ChunkHeader& h, std::byte* p) {
  Put<uint32_t>(p, kMagic);
  Put<uint8_t>(p, kVersion);
  Put<uint8_t>(p, static_cast<uint8_t>(h.kind));
  Put<uint16_t>(p, 0);
  Put<uint32_t>(p, h.from_rank);
  Put<uint32_t>(p, h.index);
  Put<uint32_t>(p, h.count);
  Put<uint32_t>(p, h.stride);
  Put<uint64_t>(p, h.incarnation);
  Put<uint64_t>(p, h.seq);
  Put<uint64_t>(p, h.total);
}

Result<ChunkHeader> ReadHeader(const std::byte* p) {
  if (Get<uint32_t>(p) != kMagic) return DataLoss("chunk: bad magic");
  if (uint8_t v = Get<uint8_t>(p); v != kVersion) return DataLoss("chunk: unknown version {}", v);
  ChunkHeader h;
  uint8_t kind = Get<uint8_t>(p);
  if (kind < 1 || kind > 3) return DataLoss("chunk: unknown kind {}", kind);
  h.kind = static_cast<FrameKind>(kind);
  Get<uint16_t>(p);
  h.from_rank = Get<uint32_t>(p);
  h.index = Get<uint32_t>(p);
  h.count = Get<uint32_t>(p);
  h.stride = Get<uint32_t>(p);
  h.incarnation = Get<uint64_t>(p);
  h.seq = Get<uint64_t>(p);
  h.total = Get<uint64_t>(p);
  return h;
}

uint64_t ExpectedCount(uint64_t total, uint32_t stride) {
  return total == 0 ? 1 : (total + stride - 1) / stride;
}

uint64_t ChunkLength(const ChunkHeader& h) {
  uint64_t begin = uint64_t{h.index} * h.stride;
  return std::min<uint64_t>(h.stride, h.total - begin);
}

Status CheckGeometry(const ChunkHeader& h, size_t payload_len, uint64_t max_total) {
  if (h.total > max_total)
    return DataLoss("chunk: message of {} bytes over the {} limit", h.total, max_total);
  if (h.stride == 0) return DataLoss("chunk: zero stride");
  if (h.count != ExpectedCount(h.total, h.stride) || h.index >= h.count) {
    return DataLoss("chunk: index {} / count {} inconsistent with {} bytes in strides of {}",
                    h.index, h.count, h.total, h.stride);
  }
  if (h.total != 0 && payload_len != ChunkLength(h)) {
    return DataLoss("chunk {} of {}: {} payload bytes, expected {}", h.index, h.count, payload_len,
                    ChunkLength(h));
  }
  if (h.total == 0 && payload_len != 0) return DataLoss("chunk: payload in an empty message");
  return Status::Ok();
}

bool SameMessage(const ChunkHeader& a, const ChunkHeader& b) {
  return a.count == b.count && a.stride == b.stride && a.total == b.total;
}

}  // namespace

std::vector<Bytes> EncodeChunks(const ChunkHeader& base, std::span<const std::byte> payload,
                                size_t max_body) {
  P2P_CHECK(max_body > kChunkHeaderBytes, "chunk body limit {} too small", max_body);
  const size_t stride = std::min<size_t>(max_body - kChunkHeaderBytes, UINT32_MAX);
  ChunkHeader h = base;
  h.stride = static_cast<uint32_t>(stride);
  h.total = payload.size();
  h.count = static_cast<uint32_t>(ExpectedCount(h.total, h.stride));
  std::vector<Bytes> bodies(h.count);
  for (h.index = 0; h.index < h.count; ++h.index) {
    size_t begin = size_t{h.index} * stride;
    size_t len = payload.empty() ? 0 : ChunkLength(h);
    Bytes& body = bodies[h.index];
    body.resize(kChunkHeaderBytes + len);
    WriteHeader(h, body.data());
    if (len > 0) std::memcpy(body.data() + kChunkHeaderBytes, payload.data() + begin, len);
  }
  return bodies;
}

Result<ChunkView> DecodeChunk(std::span<const std::byte> body, uint64_t max_total) {
  if (body.size() < kChunkHeaderBytes)
    return DataLoss("chunk: {} bytes, shorter than a header", body.size());
  P2P_ASSIGN_OR_RETURN(ChunkHeader h, ReadHeader(body.data()));
  std::span<const std::byte> payload = body.subspan(kChunkHeaderBytes);
  if (h.kind != FrameKind::kData && (h.total != 0 || h.count != 1 || !payload.empty())) {
    return DataLoss("chunk: hello frames carry no payload");
  }
  if (h.kind == FrameKind::kData) P2P_RETURN_IF_ERROR(CheckGeometry(h, payload.size(), max_total));
  return ChunkView{h, payload};
}

Result<std::optional<Message>> Reassembler::Add(const ChunkView& chunk) {
  const ChunkHeader& h = chunk.header;
  Sender& sender = senders_[{h.from_rank, h.incarnation}];
  if (sender.done.contains(h.seq)) return std::optional<Message>();  // duplicate of a done one
  if (h.count == 1) {
    MarkDone(sender, h.seq);
    Message m{static_cast<int>(h.from_rank), Bytes(chunk.payload.begin(), chunk.payload.end())};
    return std::optional<Message>(std::move(m));
  }
  return AddToPartial(sender, chunk);
}

Result<std::optional<Message>> Reassembler::AddToPartial(Sender& sender, const ChunkView& chunk) {
  const ChunkHeader& h = chunk.header;
  auto it = sender.partial.find(h.seq);
  if (it == sender.partial.end()) {
    if (sender.partial.size() >= max_partial_) {
      return DataLoss("rank {}: more than {} incomplete messages", h.from_rank, max_partial_);
    }
    Partial p{h, Bytes(h.total), std::vector<bool>(h.count), h.count};
    it = sender.partial.emplace(h.seq, std::move(p)).first;
  }
  Partial& p = it->second;
  if (!SameMessage(p.first, h))
    return DataLoss("rank {} message {}: chunks disagree", h.from_rank, h.seq);
  if (p.have[h.index]) return std::optional<Message>();  // duplicate chunk
  std::memcpy(p.data.data() + uint64_t{h.index} * h.stride, chunk.payload.data(),
              chunk.payload.size());
  p.have[h.index] = true;
  if (--p.missing > 0) return std::optional<Message>();
  Message m{static_cast<int>(h.from_rank), std::move(p.data)};
  sender.partial.erase(it);
  MarkDone(sender, h.seq);
  return std::optional<Message>(std::move(m));
}

void Reassembler::MarkDone(Sender& sender, uint64_t seq) {
  sender.done.insert(seq);
  if (sender.done.size() > kRecentDone) sender.done.erase(sender.done.begin());
}

void Reassembler::ForgetOtherIncarnations(uint32_t rank, uint64_t incarnation) {
  std::erase_if(senders_, [&](const auto& kv) {
    return kv.first.first == rank && kv.first.second != incarnation;
  });
}

}  // namespace p2p::broker::amqp
