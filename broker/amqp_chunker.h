// Chunk framing of AMQP message bodies: a fixed 48-byte header in front of each chunk's payload.
//
// Why our own: RabbitMQ caps a message (max_message_size: 128 MiB in 3.x, 16 MiB since 4.0), so
// a gradient is split into chunks of at most 16 MiB, each one AMQP message; the header also
// carries what the receiver needs to drop its duplicates after a reconnect (sender rank,
// incarnation, message seq, chunk index) and the hello handshake of Connect.
// NOTE: a minimal internal chunker, written while broker/chunking.h was in progress; unify with
// it once that API lands (the header layout is private to the AMQP transport).
//
// Header, little-endian:
//   u32 magic 'P2PA' | u8 version=1 | u8 kind | u16 reserved=0 | u32 from_rank | u32 index |
//   u32 count | u32 stride | u64 incarnation | u64 seq | u64 total
// Chunk i carries payload bytes [i*stride, min((i+1)*stride, total)); count = ceil(total/stride)
// (1 for an empty message). Decoding checks all of this before anything is allocated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <utility>
#include <vector>

#include "broker/transport.h"
#include "common/status.h"

namespace p2p::broker::amqp {

enum class FrameKind : uint8_t {
  kData = 1,        // (part of) an application message
  kHello = 2,       // "I am up, my queue is bound"; every receiver answers with kHelloReply
  kHelloReply = 3,  // answer to kHello, sent to the hello's sender only
};

struct ChunkHeader {
  FrameKind kind = FrameKind::kData;
  uint32_t from_rank = 0;
  uint32_t index = 0;
  uint32_t count = 1;
  uint32_t stride = 0;       // payload bytes per chunk, except the last
  uint64_t incarnation = 0;  // random per transport object: tells a restarted peer apart
  uint64_t seq = 0;          // message number within the incarnation
  uint64_t total = 0;        // payload bytes of the whole message
};

inline constexpr size_t kChunkHeaderBytes = 48;

// Splits `payload` into AMQP bodies of at most `max_body` bytes each, header included
// (max_body > kChunkHeaderBytes). `base` supplies kind, rank, incarnation and seq.
std::vector<Bytes> EncodeChunks(const ChunkHeader& base, std::span<const std::byte> payload,
                                size_t max_body);

struct ChunkView {
  ChunkHeader header;
  std::span<const std::byte> payload;  // points into the body passed to DecodeChunk
};

// DataLoss when `body` is not a well-formed chunk or announces a message over `max_total` bytes.
Result<ChunkView> DecodeChunk(std::span<const std::byte> body, uint64_t max_total);

// Reassembles data chunks into messages and drops duplicates (unacked deliveries redelivered
// after a reconnect, unconfirmed chunks republished by a sender after its reconnect).
// Not thread-safe: the I/O thread owns it.
class Reassembler {
 public:
  // At most `max_partial` incomplete messages per sender incarnation; more is DataLoss.
  explicit Reassembler(size_t max_partial = 16) : max_partial_(max_partial) {}

  // The completed message when `chunk` was its last missing piece; nullopt when more chunks are
  // needed or `chunk` is a duplicate; DataLoss when it contradicts earlier chunks.
  Result<std::optional<Message>> Add(const ChunkView& chunk);

  // The peer `rank` restarted as `incarnation`: drop the state of its older incarnations.
  void ForgetOtherIncarnations(uint32_t rank, uint64_t incarnation);

 private:
  struct Partial {
    ChunkHeader first;
    Bytes data;
    std::vector<bool> have;
    uint32_t missing = 0;
  };
  struct Sender {
    std::map<uint64_t, Partial> partial;  // by seq
    std::set<uint64_t> done;              // recently completed seqs (bounded)
  };
  using SenderKey = std::pair<uint32_t, uint64_t>;  // rank, incarnation

  Result<std::optional<Message>> AddToPartial(Sender& sender, const ChunkView& chunk);
  static void MarkDone(Sender& sender, uint64_t seq);

  size_t max_partial_;
  std::map<SenderKey, Sender> senders_;
};

}  // namespace p2p::broker::amqp
