#include "broker/chunking.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "common/byte_pool.h"

namespace p2p::broker {
namespace {

constexpr uint32_t kMagic = 0x41503250;  // "P2PA" read as little-endian u32
constexpr uint8_t kVersion = 1;
constexpr size_t kRecentDone = 1024;  // completed messages remembered per incarnation
// Bookkeeping charged to the budgets besides the payload bytes, so that a flood of tiny chunks
// (a forged stride of 1) costs what it really costs: a map node and a vector per early chunk.
constexpr uint64_t kPartialOverhead = 256;
constexpr uint64_t kChunkOverhead = 64;

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

// Capacity to reserve for `needed` bytes: geometric growth, never beyond the message's total, so
// a buffer holds at most twice what arrived and in-order chunks are copied O(log n) times.
uint64_t GrowTo(uint64_t needed, uint64_t capacity, uint64_t total) {
  if (needed <= capacity) return capacity;
  return std::min(total, std::max(needed, 2 * capacity));
}

// Tells an exact replay of a completed message from another message with the same claimed seq.
// Not cryptographic (the envelope MAC is the security check): forging a collision would need the
// genuine message's bytes before they are sent. Eight bytes per step: messages reach 256 MiB.
uint64_t ContentHash(std::span<const std::byte> bytes) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ bytes.size();
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  for (; i < bytes.size(); ++i) h = (h ^ std::to_integer<uint64_t>(bytes[i])) * 0x100000001b3ull;
  h ^= h >> 29;
  return h * 0xc4ceb9fe1a85ec53ull;
}

}  // namespace

void EncodeChunks(const ChunkHeader& base, std::span<const std::byte> payload, size_t max_body,
                  const ChunkSink& emit) {
  P2P_CHECK(max_body > kChunkHeaderBytes, "chunk body limit {} too small", max_body);
  const size_t stride = std::min<size_t>(max_body - kChunkHeaderBytes, UINT32_MAX);
  ChunkHeader h = base;
  h.stride = static_cast<uint32_t>(stride);
  h.total = payload.size();
  h.count = static_cast<uint32_t>(ExpectedCount(h.total, h.stride));
  std::array<std::byte, kChunkHeaderBytes> header;
  for (h.index = 0; h.index < h.count; ++h.index) {
    const size_t begin = size_t{h.index} * stride;
    const size_t len = payload.empty() ? 0 : ChunkLength(h);
    WriteHeader(h, header.data());
    emit(header, payload.subspan(begin, len));
  }
}

std::vector<Bytes> EncodeChunks(const ChunkHeader& base, std::span<const std::byte> payload,
                                size_t max_body) {
  std::vector<Bytes> bodies;
  EncodeChunks(base, payload, max_body,
               [&bodies](std::span<const std::byte> header, std::span<const std::byte> part) {
                 Bytes& body = bodies.emplace_back();
                 body.reserve(header.size() + part.size());
                 body.insert(body.end(), header.begin(), header.end());
                 body.insert(body.end(), part.begin(), part.end());
               });
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

Reassembler::Reassembler(ReassemblyLimits limits) : limits_(limits) {
  P2P_CHECK(limits_.max_pending_bytes_per_sender > limits_.max_message_bytes &&
                limits_.max_pending_bytes >= limits_.max_pending_bytes_per_sender &&
                limits_.max_partial_per_sender > 0 && limits_.max_histories_per_sender > 0,
            "inconsistent reassembly limits");
}

size_t Reassembler::pending_messages() const {
  size_t n = 0;
  for (const auto& [rank, sender] : senders_) n += sender.partial.size();
  return n;
}

const char* DropReasonName(DropReason reason) {
  switch (reason) {
    case DropReason::kNotData:
      return "not_data";
    case DropReason::kOverLimit:
      return "over_limit";
    case DropReason::kOverBudget:
      return "over_budget";
    case DropReason::kEvicted:
      return "evicted";
    case DropReason::kTimeout:
      return "timeout";
    case DropReason::kDuplicateChunk:
      return "duplicate_chunk";
    case DropReason::kReplay:
      return "replay";
  }
  return "unknown";
}

void Reassembler::Drop(DropReason reason, uint32_t sender) {
  ++rejected_;
  if (observer_) observer_(reason, sender);
}

Result<std::optional<Message>> Reassembler::Add(const ChunkView& chunk, TimePoint now) {
  return Add(chunk.header.from_rank, chunk, now);
}

Result<std::optional<Message>> Reassembler::Add(uint32_t sender, const ChunkView& chunk,
                                                TimePoint now) {
  const ChunkHeader& h = chunk.header;
  EvictStale(now);
  if (h.kind != FrameKind::kData) {
    Drop(DropReason::kNotData, sender);
    return InvalidArgument("chunk: a hello frame is not part of a message");
  }
  // DecodeChunk checked the geometry, maybe against a looser limit than ours.
  if (h.total > limits_.max_message_bytes) {
    Drop(DropReason::kOverLimit, sender);
    return DataLoss("sender {}: message of {} bytes over the {} limit", sender, h.total,
                    limits_.max_message_bytes);
  }
  if (h.count == 1) {
    Bytes payload = BytePool::Global().Take(chunk.payload.size());
    payload.assign(chunk.payload.begin(), chunk.payload.end());
    return Complete(sender, h.incarnation, h.seq, std::move(payload), now);
  }
  return AddToPartial(sender, chunk, now);
}

void Reassembler::Protect(uint32_t sender, bool on) {
  if (on) {
    protected_.insert(sender);
  } else {
    protected_.erase(sender);
  }
}

void Reassembler::Forget(uint32_t sender) {
  protected_.erase(sender);
  auto it = senders_.find(sender);
  if (it == senders_.end()) return;
  pending_bytes_ -= it->second.pending_bytes;
  senders_.erase(it);
}

namespace {

uint64_t EarlyCharge(uint64_t bytes, size_t chunks) { return bytes + chunks * kChunkOverhead; }

}  // namespace

// Bytes and number of the early chunks that directly follow chunk `from` - 1.
std::pair<uint64_t, size_t> Reassembler::ContiguousEarly(const Partial& p, uint32_t from) {
  uint64_t bytes = 0;
  size_t n = 0;
  for (auto e = p.early.find(from); e != p.early.end() && e->first == from + n; ++e, ++n) {
    bytes += e->second.size();
  }
  return {bytes, n};
}

Result<std::optional<Message>> Reassembler::AddToPartial(uint32_t rank, const ChunkView& chunk,
                                                         TimePoint now) {
  const ChunkHeader& h = chunk.header;
  Sender& sender = senders_[rank];
  const PartialKey key{h.incarnation, h.seq, h.total, h.stride};
  auto it = sender.partial.find(key);
  if (it == sender.partial.end()) {
    while (sender.partial.size() >= limits_.max_partial_per_sender)
      EvictWeakest(rank, rank, nullptr);
    it = sender.partial.try_emplace(key).first;
    it->second.count = h.count;
    it->second.last_seen = now;
  }
  Partial& p = it->second;
  if (h.index < p.next || p.early.contains(h.index)) {
    // The same chunk again: a redelivery, a republish or a replay.
    Drop(DropReason::kDuplicateChunk, rank);
    return std::optional<Message>();
  }
  // What the partial will hold once the chunk is stored (see Store), checked before storing.
  uint64_t after = p.charged + EarlyCharge(chunk.payload.size(), 1);
  if (h.index == p.next) {
    const auto [drained, drained_chunks] = ContiguousEarly(p, h.index + 1);
    const uint64_t needed = p.data.size() + chunk.payload.size() + drained;
    after = p.charged - p.reserved + GrowTo(needed, p.reserved, h.total) -
            EarlyCharge(drained, drained_chunks);
  }
  if (p.charged == 0) after += kPartialOverhead;  // a new partial
  if (after > p.charged) {
    if (Status room = MakeRoom(rank, &key, after - p.charged); !room.ok()) {
      Erase(sender, sender.partial.find(key));  // it could never complete
      Drop(DropReason::kOverBudget, rank);
      return room;
    }
  }
  Store(p, h, chunk.payload);
  p.received += chunk.payload.size();
  p.last_seen = now;
  Recharge(sender, p);
  if (p.next < p.count) return std::optional<Message>();
  Bytes whole = std::move(p.data);
  Erase(sender, sender.partial.find(key));
  return Complete(rank, h.incarnation, h.seq, std::move(whole), now);
}

// Appends the chunk (and the early chunks it makes contiguous) with one reservation, or keeps it
// apart until the chunks before it arrived.
void Reassembler::Store(Partial& p, const ChunkHeader& h, std::span<const std::byte> payload) {
  if (h.index != p.next) {
    p.early.emplace(h.index, Bytes(payload.begin(), payload.end()));
    p.early_bytes += payload.size();
    return;
  }
  const uint64_t needed = p.data.size() + payload.size() + ContiguousEarly(p, h.index + 1).first;
  if (p.data.capacity() == 0) {
    // A whole-message buffer the process already holds: no regrowth, no fresh pages.
    if (auto held = BytePool::Global().TakeHeld(h.total)) p.data = std::move(*held);
  }
  p.reserved = GrowTo(needed, p.reserved, h.total);
  if (p.data.capacity() < p.reserved) p.data.reserve(p.reserved);
  p.data.insert(p.data.end(), payload.begin(), payload.end());
  ++p.next;
  for (auto e = p.early.find(p.next); e != p.early.end(); e = p.early.find(p.next)) {
    p.data.insert(p.data.end(), e->second.begin(), e->second.end());
    p.early_bytes -= e->second.size();
    p.early.erase(e);
    ++p.next;
  }
}

void Reassembler::Recharge(Sender& sender, Partial& p) {
  const uint64_t charge =
      kPartialOverhead + p.reserved + EarlyCharge(p.early_bytes, p.early.size());
  sender.pending_bytes = sender.pending_bytes - p.charged + charge;
  pending_bytes_ = pending_bytes_ - p.charged + charge;
  p.charged = charge;
}

// Evicts the weakest incomplete messages (never `keep`, a partial of `rank`) until
// `more` bytes fit into `rank`'s budget and the total one.
Status Reassembler::MakeRoom(uint32_t rank, const PartialKey* keep, uint64_t more) {
  const Sender& sender = senders_[rank];
  while (sender.pending_bytes + more > limits_.max_pending_bytes_per_sender) {
    if (!EvictWeakest(rank, rank, keep)) {
      return Unavailable(
          "sender {}: {} more bytes do not fit the {} bytes allowed for its incomplete messages",
          rank, more, limits_.max_pending_bytes_per_sender);
    }
  }
  while (pending_bytes_ + more > limits_.max_pending_bytes) {
    if (!EvictWeakest(std::nullopt, rank, keep)) {
      return Unavailable("{} more bytes do not fit the {} bytes allowed for incomplete messages",
                         more, limits_.max_pending_bytes);
    }
  }
  return Status::Ok();
}

// Drops the incomplete message of `only` (any sender if nullopt), other than `keep` of
// `keep_rank`, that received the fewest bytes, the least recently active of those; counts it.
// Why fewest bytes first: a genuine multi-chunk transfer gets a whole chunk (up to 16 MiB) at
// once, so forged one-byte starts go first however many of them arrive in between.
// False when there is none.
bool Reassembler::EvictWeakest(std::optional<uint32_t> only, uint32_t keep_rank,
                               const PartialKey* keep) {
  Sender* victim_sender = nullptr;
  uint32_t victim_rank = 0;
  bool victim_protected = false;
  std::map<PartialKey, Partial>::iterator victim;
  const bool for_protected = protected_.contains(keep_rank);
  for (auto& [rank, sender] : senders_) {
    if (only.has_value() && rank != *only) continue;
    // An unauthenticated sender never costs an authenticated one its messages (see Protect).
    const bool is_protected = protected_.contains(rank);
    if (is_protected && !for_protected && rank != keep_rank) continue;
    for (auto it = sender.partial.begin(); it != sender.partial.end(); ++it) {
      if (keep != nullptr && rank == keep_rank && it->first == *keep) continue;
      if (victim_sender == nullptr ||
          std::tie(is_protected, it->second.received, it->second.last_seen) <
              std::tie(victim_protected, victim->second.received, victim->second.last_seen)) {
        victim_sender = &sender;
        victim_rank = rank;
        victim_protected = is_protected;
        victim = it;
      }
    }
  }
  if (victim_sender == nullptr) return false;
  Erase(*victim_sender, victim);
  Drop(DropReason::kEvicted, victim_rank);
  return true;
}

void Reassembler::Erase(Sender& sender, std::map<PartialKey, Partial>::iterator it) {
  sender.pending_bytes -= it->second.charged;
  pending_bytes_ -= it->second.charged;
  BytePool::Global().Give(std::move(it->second.data));  // empty after a completed message
  sender.partial.erase(it);
}

size_t Reassembler::EvictStale(TimePoint now) {
  size_t dropped = 0;
  for (auto& [rank, sender] : senders_) {
    for (auto it = sender.partial.begin(); it != sender.partial.end();) {
      auto next = std::next(it);
      if (now - it->second.last_seen >= limits_.timeout) {
        Erase(sender, it);
        Drop(DropReason::kTimeout, rank);
        ++dropped;
      }
      it = next;
    }
  }
  return dropped;
}

std::optional<Message> Reassembler::Complete(uint32_t rank, uint64_t incarnation, uint64_t seq,
                                             Bytes payload, TimePoint now) {
  if (!limits_.drop_replays) return Message{static_cast<int>(rank), std::move(payload)};
  auto& histories = senders_[rank].histories;
  auto found = histories.find(incarnation);
  if (found == histories.end()) {
    if (histories.size() >= limits_.max_histories_per_sender) {
      histories.erase(std::min_element(
          histories.begin(), histories.end(),
          [](const auto& a, const auto& b) { return a.second.last_seen < b.second.last_seen; }));
    }
    found = histories.emplace(incarnation, History{}).first;
  }
  History& history = found->second;
  history.last_seen = now;
  const std::pair<uint64_t, uint64_t> id{seq, ContentHash(payload)};
  if (!history.done.insert(id).second) {
    Drop(DropReason::kReplay, rank);  // an exact replay of a message already delivered
    return std::nullopt;
  }
  history.order.push_back(id);
  if (history.order.size() > kRecentDone) {
    history.done.erase(history.order.front());
    history.order.pop_front();
  }
  return Message{static_cast<int>(rank), std::move(payload)};
}

}  // namespace p2p::broker
