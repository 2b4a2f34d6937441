#include "broker/chunking.h"

#include <algorithm>
#include <cstring>

namespace p2p::broker {
namespace {

void StoreLe(std::byte* out, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<std::byte>(v >> (8 * i));
}

uint64_t LoadLe(const std::byte* in, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(in[i]) << (8 * i);
  return v;
}

// Far above any limit a Reassembler accepts; keeps the range arithmetic below from overflowing.
constexpr uint64_t kMaxTotalBytes = uint64_t{1} << 48;

uint64_t CeilDiv(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

// Length of every chunk but the last.
uint64_t StrideOf(const ChunkHeader& h) { return CeilDiv(h.total_bytes, h.count); }

// A (count, total) pair is valid when splitting `total` into `count` chunks of stride L leaves
// no chunk empty (except the single chunk of an empty message).
Status CheckCountAndTotal(const ChunkHeader& h) {
  if (h.count == 0) return DataLoss("chunk: count is 0");
  if (h.total_bytes > kMaxTotalBytes) return DataLoss("chunk: total of {} bytes", h.total_bytes);
  if (h.index >= h.count) return DataLoss("chunk: index {} >= count {}", h.index, h.count);
  if (h.total_bytes == 0) {
    if (h.count != 1) return DataLoss("chunk: empty message in {} chunks", h.count);
    return Status::Ok();
  }
  if (h.count > h.total_bytes || StrideOf(h) * (h.count - 1) >= h.total_bytes) {
    return DataLoss("chunk: {} bytes cannot be split into {} non-empty chunks", h.total_bytes,
                    h.count);
  }
  return Status::Ok();
}

}  // namespace

bool IsChunkFrame(std::span<const std::byte> frame) {
  return frame.size() >= kChunkMagic.size() &&
         std::equal(kChunkMagic.begin(), kChunkMagic.end(), frame.begin());
}

std::array<std::byte, kChunkHeaderBytes> EncodeChunkHeader(const ChunkHeader& header) {
  std::array<std::byte, kChunkHeaderBytes> out{};
  std::copy(kChunkMagic.begin(), kChunkMagic.end(), out.begin());
  out[4] = std::byte{kChunkVersion};
  StoreLe(&out[8], header.message_id, 8);
  StoreLe(&out[16], header.index, 4);
  StoreLe(&out[20], header.count, 4);
  StoreLe(&out[24], header.total_bytes, 8);
  return out;
}

Result<ChunkHeader> DecodeChunkHeader(std::span<const std::byte> frame) {
  if (frame.size() < kChunkHeaderBytes) {
    return DataLoss("chunk: frame of {} bytes is shorter than the {}-byte header", frame.size(),
                    kChunkHeaderBytes);
  }
  if (!IsChunkFrame(frame)) return DataLoss("chunk: bad magic");
  if (frame[4] != std::byte{kChunkVersion}) {
    return InvalidArgument("chunk: unsupported framing version {}", static_cast<int>(frame[4]));
  }
  if (frame[5] != std::byte{0} || frame[6] != std::byte{0} || frame[7] != std::byte{0}) {
    return DataLoss("chunk: reserved bytes are not zero");
  }
  ChunkHeader h;
  h.message_id = LoadLe(&frame[8], 8);
  h.index = static_cast<uint32_t>(LoadLe(&frame[16], 4));
  h.count = static_cast<uint32_t>(LoadLe(&frame[20], 4));
  h.total_bytes = LoadLe(&frame[24], 8);
  P2P_RETURN_IF_ERROR(CheckCountAndTotal(h));
  const auto [begin, end] = ChunkRange(h);
  if (frame.size() - kChunkHeaderBytes != end - begin) {
    return DataLoss("chunk: chunk {}/{} carries {} bytes, header implies {}", h.index, h.count,
                    frame.size() - kChunkHeaderBytes, end - begin);
  }
  return h;
}

uint32_t ChunkCount(uint64_t total_bytes, size_t max_chunk_payload) {
  P2P_CHECK(max_chunk_payload > 0, "max_chunk_payload must be positive");
  const uint64_t count = std::max<uint64_t>(1, CeilDiv(total_bytes, max_chunk_payload));
  P2P_CHECK(count <= UINT32_MAX, "message of {} bytes needs too many chunks", total_bytes);
  return static_cast<uint32_t>(count);
}

std::pair<uint64_t, uint64_t> ChunkRange(const ChunkHeader& header) {
  if (header.total_bytes == 0) return {0, 0};
  const uint64_t stride = StrideOf(header);
  const uint64_t begin = stride * header.index;
  return {begin, std::min(header.total_bytes, begin + stride)};
}

Status ForEachChunk(uint64_t message_id, std::span<const std::byte> message,
                    size_t max_chunk_payload, const ChunkSink& emit) {
  ChunkHeader h{message_id, 0, ChunkCount(message.size(), max_chunk_payload), message.size()};
  for (; h.index < h.count; ++h.index) {
    const auto [begin, end] = ChunkRange(h);
    const auto header = EncodeChunkHeader(h);
    P2P_RETURN_IF_ERROR(emit(header, message.subspan(begin, end - begin)));
  }
  return Status::Ok();
}

std::vector<Bytes> SplitIntoChunks(uint64_t message_id, std::span<const std::byte> message,
                                   size_t max_chunk_payload) {
  std::vector<Bytes> frames;
  Status s = ForEachChunk(
      message_id, message, max_chunk_payload,
      [&frames](std::span<const std::byte> header, std::span<const std::byte> payload) {
        Bytes& f = frames.emplace_back();
        f.reserve(header.size() + payload.size());
        f.insert(f.end(), header.begin(), header.end());
        f.insert(f.end(), payload.begin(), payload.end());
        return Status::Ok();
      });
  P2P_CHECK(s.ok(), "{}", s.ToString());
  return frames;
}

// ---------------------------------------------------------------- Reassembler

Reassembler::Reassembler(ReassemblerOptions options) : options_(options) {}

Status Reassembler::Reject(Status status) {
  ++rejected_;
  return status;
}

Status Reassembler::CheckNewMessage(const ChunkHeader& h) const {
  if (h.total_bytes > options_.max_message_bytes) {
    return InvalidArgument("chunk: message of {} bytes exceeds the limit of {}", h.total_bytes,
                           options_.max_message_bytes);
  }
  if (pending_bytes_ + h.total_bytes > options_.max_pending_bytes) {
    return Unavailable("chunk: {} bytes of incomplete messages pending; no room for {} more",
                       pending_bytes_, h.total_bytes);
  }
  return Status::Ok();
}

void Reassembler::Erase(std::map<Key, Pending>::iterator it) {
  pending_bytes_ -= it->second.first.total_bytes;
  pending_.erase(it);
}

void Reassembler::EvictOldestOf(int sender) {
  auto first = pending_.lower_bound({sender, 0});
  auto oldest = pending_.end();
  size_t n = 0;
  for (auto it = first; it != pending_.end() && it->first.first == sender; ++it, ++n) {
    if (oldest == pending_.end() || it->second.arrival < oldest->second.arrival) oldest = it;
  }
  if (n >= options_.max_pending_per_sender && oldest != pending_.end()) {
    Erase(oldest);
    ++rejected_;  // an incomplete message dropped
  }
}

Result<Reassembler::Pending*> Reassembler::FindOrStart(int sender, const ChunkHeader& h,
                                                       TimePoint now) {
  auto it = pending_.find({sender, h.message_id});
  if (it != pending_.end()) {
    const ChunkHeader& first = it->second.first;
    if (first.count != h.count || first.total_bytes != h.total_bytes) {
      return DataLoss("chunk: message {} from {} changed shape mid-way", h.message_id, sender);
    }
    return &it->second;
  }
  P2P_RETURN_IF_ERROR(CheckNewMessage(h));
  EvictOldestOf(sender);
  Pending& p = pending_[{sender, h.message_id}];
  p.first = h;
  p.data.resize(h.total_bytes);  // bounded by CheckNewMessage
  p.have.assign(h.count, false);
  p.arrival = arrivals_++;
  p.last_seen = now;
  pending_bytes_ += h.total_bytes;
  return &p;
}

Result<std::optional<Bytes>> Reassembler::Accept(int sender, std::span<const std::byte> frame,
                                                 TimePoint now) {
  Result<ChunkHeader> header = DecodeChunkHeader(frame);
  if (!header.ok()) return Reject(header.status());
  const ChunkHeader& h = *header;
  const auto payload = frame.subspan(kChunkHeaderBytes);
  if (h.count == 1) {  // fast path: no bookkeeping for single-frame messages
    Status s = CheckNewMessage(h);
    if (!s.ok()) return Reject(s);
    return std::optional<Bytes>(Bytes(payload.begin(), payload.end()));
  }
  Result<Pending*> found = FindOrStart(sender, h, now);
  if (!found.ok()) return Reject(found.status());
  Pending& p = **found;
  if (p.have[h.index]) {
    return Reject(DataLoss("chunk: duplicate chunk {} of message {}", h.index, h.message_id));
  }
  std::copy(payload.begin(), payload.end(),
            p.data.begin() + static_cast<std::ptrdiff_t>(ChunkRange(h).first));
  p.have[h.index] = true;
  p.last_seen = now;
  if (++p.received < p.first.count) return std::optional<Bytes>();
  auto it = pending_.find({sender, h.message_id});
  Bytes whole = std::move(it->second.data);
  Erase(it);
  return std::optional<Bytes>(std::move(whole));
}

size_t Reassembler::DropStale(TimePoint cutoff) {
  size_t dropped = 0;
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto next = std::next(it);
    if (it->second.last_seen < cutoff) {
      Erase(it);
      ++dropped;
    }
    it = next;
  }
  rejected_ += dropped;
  return dropped;
}

}  // namespace p2p::broker
