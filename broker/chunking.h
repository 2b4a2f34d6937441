// Chunk framing: splits one transport message into self-describing frames and reassembles them.
//
// Used by the ZeroMQ transport (spec: docs/wire-format.md §2.1; AMQP has its own P2PA framing,
// broker/amqp_chunker.h, §2.2). Transport-agnostic. Every
// message, small or large, travels as >= 1 frame:
//
//   offset size  field
//   0      4     magic "P2PC"
//   4      1     framing version (kChunkVersion)
//   5      3     reserved, zero
//   8      8     message id (u64 LE, unique per sender: a counter started at a random value,
//                so a restarted sender never reuses the id of a message still being reassembled)
//   16     4     chunk index (u32 LE, < count)
//   20     4     chunk count (u32 LE, >= 1)
//   24     8     total message length (u64 LE)
//   32     ...   this chunk's bytes
//
// Chunk i covers [i * L, min(total, (i + 1) * L)) of the message, L = ceil(total / count); so the
// header fixes every chunk's length and position and chunks can neither overlap nor leave holes.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "common/status.h"

namespace p2p::broker {

using Bytes = std::vector<std::byte>;

inline constexpr size_t kChunkHeaderBytes = 32;
inline constexpr uint8_t kChunkVersion = 1;
inline constexpr std::array<std::byte, 4> kChunkMagic = {std::byte{'P'}, std::byte{'2'},
                                                         std::byte{'P'}, std::byte{'C'}};

struct ChunkHeader {
  uint64_t message_id = 0;
  uint32_t index = 0;
  uint32_t count = 1;
  uint64_t total_bytes = 0;
  bool operator==(const ChunkHeader&) const = default;
};

// True when `frame` starts with kChunkMagic (lets a transport tell chunks from its own control
// frames).
bool IsChunkFrame(std::span<const std::byte> frame);

std::array<std::byte, kChunkHeaderBytes> EncodeChunkHeader(const ChunkHeader& header);

// Parses and checks a frame's header: magic, version, reserved bytes, index < count, count
// consistent with total, and that the frame carries exactly this chunk's length. DataLoss or
// InvalidArgument otherwise. Does not allocate.
Result<ChunkHeader> DecodeChunkHeader(std::span<const std::byte> frame);

// Number of chunks for a message of `total_bytes` with at most `max_chunk_payload` bytes each
// (>= 1; an empty message is one empty chunk). Precondition: max_chunk_payload > 0.
uint32_t ChunkCount(uint64_t total_bytes, size_t max_chunk_payload);

// Byte range [first, second) of the message that chunk `index` carries.
std::pair<uint64_t, uint64_t> ChunkRange(const ChunkHeader& header);

// Calls `emit(header_bytes, payload)` once per chunk, in index order; stops at and returns the
// first error `emit` returns. The spans are valid only during the call; the transport copies
// them into its own frame (header then payload). Precondition: max_chunk_payload > 0.
using ChunkSink =
    std::function<Status(std::span<const std::byte> header, std::span<const std::byte> payload)>;
Status ForEachChunk(uint64_t message_id, std::span<const std::byte> message,
                    size_t max_chunk_payload, const ChunkSink& emit);

// Convenience: all frames of a message, each header + payload.
std::vector<Bytes> SplitIntoChunks(uint64_t message_id, std::span<const std::byte> message,
                                   size_t max_chunk_payload);

struct ReassemblerOptions {
  uint64_t max_message_bytes = uint64_t{256} << 20;  // larger totals are rejected unallocated
  uint64_t max_pending_bytes = uint64_t{1} << 30;    // sum over all incomplete messages
  size_t max_pending_per_sender = 4;                 // oldest incomplete one is dropped beyond
};

// Rebuilds messages from frames. Frames of one message may arrive in any order and interleaved
// with other messages. A message's buffer is allocated when its first frame arrives, only after
// its declared total passed max_message_bytes and the pending budget. Incomplete messages are
// dropped (and counted in rejected()) when evicted by a newer one from the same sender or by
// DropStale. Not thread-safe: one owner (the transport's receiving thread).
class Reassembler {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  explicit Reassembler(ReassemblerOptions options = {});

  // Feeds one frame that arrived from `sender` (the link's origin, as the transport knows it).
  // Returns the whole message when this frame completes it; std::nullopt when more frames are
  // needed; an error Status (also counted in rejected()) when the frame is malformed, duplicate,
  // inconsistent with earlier frames of its message, or over a limit.
  Result<std::optional<Bytes>> Accept(int sender, std::span<const std::byte> frame,
                                      TimePoint now = std::chrono::steady_clock::now());

  // Drops incomplete messages whose last frame arrived before `cutoff`; returns how many.
  size_t DropStale(TimePoint cutoff);

  uint64_t rejected() const { return rejected_; }
  uint64_t pending_bytes() const { return pending_bytes_; }
  size_t pending_messages() const { return pending_.size(); }

 private:
  struct Pending {
    ChunkHeader first;  // count and total of the message
    Bytes data;
    std::vector<bool> have;
    uint32_t received = 0;
    TimePoint last_seen;
    uint64_t arrival = 0;  // order of creation, for eviction
  };
  using Key = std::pair<int, uint64_t>;  // (sender, message id)

  Result<Pending*> FindOrStart(int sender, const ChunkHeader& header, TimePoint now);
  Status CheckNewMessage(const ChunkHeader& header) const;
  void EvictOldestOf(int sender);
  void Erase(std::map<Key, Pending>::iterator it);
  Status Reject(Status status);

  ReassemblerOptions options_;
  std::map<Key, Pending> pending_;
  uint64_t pending_bytes_ = 0;
  uint64_t rejected_ = 0;
  uint64_t arrivals_ = 0;
};

}  // namespace p2p::broker
