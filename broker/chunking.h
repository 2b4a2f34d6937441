// Chunk framing of transport messages, for both transports (spec: docs/wire-format.md §2): a fixed
// 48-byte "P2PA" header in front of each chunk's payload, and the one bounded Reassembler.
//
// Why chunks at all: RabbitMQ caps a message (max_message_size: 128 MiB in 3.x, 16 MiB since 4.0)
// and ZeroMQ's ROUTER drops a peer that sends a frame over ZMQ_MAXMSGSIZE, so a gradient travels
// as frames of bounded size. The header also carries what AMQP needs to drop its duplicates after
// a reconnect (sender rank, incarnation, message seq, chunk index) and AMQP's hello handshake.
// ZeroMQ sends only data frames (its handshake is the P2PZ control frame, broker/zmq_util.h) and
// reassembles per connection, not per claimed rank (broker/zmq_links.h).
//
// Header, little-endian:
//   u32 magic 'P2PA' | u8 version=1 | u8 kind | u16 reserved=0 | u32 from_rank | u32 index |
//   u32 count | u32 stride | u64 incarnation | u64 seq | u64 total
// Chunk i carries payload bytes [i*stride, min((i+1)*stride, total)); count = ceil(total/stride)
// (1 for an empty message). Decoding checks all of this before anything is allocated.
//
// Everything in a header is unauthenticated (anyone who can reach a ZeroMQ ROUTER or publish to
// the run's AMQP exchange can forge one): the Reassembler bounds what forged chunks can make it
// hold, and the envelope's MAC (sync/, docs/security.md) decides what is genuine.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <tuple>
#include <utility>
#include <vector>

#include "broker/transport.h"
#include "common/status.h"

namespace p2p::broker {

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
// The same chunks, handed to `emit` one by one as (encoded header, payload slice) without copying
// the payload; the spans are valid only during the call.
using ChunkSink =
    std::function<void(std::span<const std::byte> header, std::span<const std::byte> payload)>;
void EncodeChunks(const ChunkHeader& base, std::span<const std::byte> payload, size_t max_body,
                  const ChunkSink& emit);

struct ChunkView {
  ChunkHeader header;
  std::span<const std::byte> payload;  // points into the body passed to DecodeChunk
};

// DataLoss when `body` is not a well-formed chunk or announces a message over `max_total` bytes.
Result<ChunkView> DecodeChunk(std::span<const std::byte> body, uint64_t max_total);

// What a Reassembler may hold. The defaults fit the envelope limit (broker/envelope.h).
struct ReassemblyLimits {
  uint64_t max_message_bytes = uint64_t{256} << 20;  // a chunk announcing more is rejected
  // Bytes held for incomplete messages (as allocated, bookkeeping included), per claimed sender
  // rank over all its incarnations, and over all senders. Must be > max_message_bytes.
  uint64_t max_pending_bytes_per_sender = uint64_t{512} << 20;
  uint64_t max_pending_bytes = uint64_t{1} << 30;
  size_t max_partial_per_sender = 16;          // incomplete messages per rank
  size_t max_histories_per_sender = 4;         // incarnations per rank whose replays are filtered
  std::chrono::milliseconds timeout{120'000};  // an incomplete message idle this long is dropped
  // Drop exact replays of completed messages (hashes every completed message). AMQP needs it
  // (redeliveries, republishes); ZeroMQ over a stream does not redeliver and leaves replays to
  // the mailbox's duplicate check (sync/), saving the hash of every message.
  bool drop_replays = true;
};

// Why the Reassembler dropped a chunk or an incomplete message (each drop is one rejected()).
enum class DropReason {
  kNotData,         // a hello frame handed to Add
  kOverLimit,       // a chunk announcing a message over max_message_bytes
  kOverBudget,      // a chunk that cannot be held within the budgets (its message is dropped)
  kEvicted,         // an incomplete message dropped to make room for another
  kTimeout,         // an incomplete message that received nothing for limits.timeout
  kDuplicateChunk,  // a chunk of an incomplete message that arrived before
  kReplay,          // a completed message delivered before with the same bytes
};
const char* DropReasonName(DropReason reason);

// Reassembles data chunks into messages and drops exact replays (unacked deliveries redelivered
// after a reconnect, unconfirmed chunks republished by a sender after its reconnect).
//
// Memory grows with the bytes that arrived, never with what a header announces: a message's
// buffer holds the chunks received in order (grown geometrically up to its total) and chunks
// that came early are kept apart until their turn. To avoid the regrowth copies and the fresh
// pages of every round, a message's buffer is a whole-message one from the process's BytePool
// (common/byte_pool.h) when the pool holds one that fits: reusing memory the process already
// holds, bounded by the pool's budget, so forged chunks still cannot make it allocate more.
// Buffers of dropped messages go back to the pool. When a budget or the per-sender count would be
// exceeded, the incomplete messages that received the fewest bytes (then the least recently
// active) are dropped: a genuine transfer receives whole chunks, a forged start usually does not.
// This bounds memory, not availability: an attacker who sends more bytes per forged message than
// a genuine one has received can still make it be dropped (the run then times out; it never
// applies a wrong update). Every dropped chunk or message is counted in rejected().
//
// A completed message is a replay, and dropped, only when the same (rank, incarnation, seq) was
// completed before with the same bytes: a forged chunk cannot make a genuine message look like a
// duplicate. Not thread-safe: the I/O thread owns it.
class Reassembler {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  explicit Reassembler(ReassemblyLimits limits = {});

  // The completed message when `chunk` was its last missing piece; nullopt when more chunks are
  // needed or `chunk` is a replay (counted); an error (counted) when the chunk announces a
  // message over the limit or cannot be held within the budgets.
  // The sender is the header's claimed rank (AMQP: the exchange is the only source).
  Result<std::optional<Message>> Add(const ChunkView& chunk, TimePoint now = Clock::now());
  // The sender is `sender`, a key the transport chose (ZeroMQ: one per connection, so a forged
  // connection's chunks never mix with, or evict the budget of, another's); Message::from is it.
  Result<std::optional<Message>> Add(uint32_t sender, const ChunkView& chunk,
                                     TimePoint now = Clock::now());

  // Drops everything held for `sender` (its incomplete messages, uncounted, and its replay
  // filter): the transport closed that source for good.
  void Forget(uint32_t sender);

  // Marks `sender` as authenticated (ZeroMQ: the connection the layer above proved; see
  // Transport::ConfirmSender) or no longer. Room for an unprotected sender's chunk is never made
  // by evicting a protected sender's incomplete messages (it is refused instead), and room for a
  // protected sender's chunk is made from unprotected senders' first: however many bytes forged
  // starts carry, they cannot push a genuine transfer out.
  void Protect(uint32_t sender, bool on);

  // Called once per drop, with the reason and the sender it was charged to (a rank or a key).
  using DropObserver = std::function<void(DropReason reason, uint32_t sender)>;
  void set_drop_observer(DropObserver observer) { observer_ = std::move(observer); }

  // Drops the incomplete messages that received nothing for limits.timeout; returns how many.
  size_t EvictStale(TimePoint now = Clock::now());

  uint64_t rejected() const { return rejected_; }  // chunks and incomplete messages dropped
  uint64_t pending_bytes() const { return pending_bytes_; }
  size_t pending_messages() const;

 private:
  // A message is identified by its sender's claims, geometry included, so that a forged chunk
  // with a genuine seq but another size starts a message of its own instead of poisoning it.
  using PartialKey = std::tuple<uint64_t, uint64_t, uint64_t, uint32_t>;  // inc, seq, total, stride
  struct Partial {
    uint32_t count = 0;
    Bytes data;  // chunks [0, next), contiguous
    // What `data` is charged for: its capacity as grown geometrically from what arrived. A buffer
    // reused from the BytePool may be larger; that memory was held by the process already.
    uint64_t reserved = 0;
    uint32_t next = 0;                // first chunk not in `data`
    std::map<uint32_t, Bytes> early;  // chunks after `next` that arrived before it
    uint64_t early_bytes = 0;         // their payload bytes
    uint64_t received = 0;            // payload bytes, for the eviction order
    uint64_t charged = 0;             // what this partial counts against the budgets
    TimePoint last_seen;
  };
  // Completed messages of one incarnation, by (seq, content hash), oldest first.
  struct History {
    std::set<std::pair<uint64_t, uint64_t>> done;
    std::deque<std::pair<uint64_t, uint64_t>> order;
    TimePoint last_seen;
  };
  struct Sender {
    std::map<PartialKey, Partial> partial;
    std::map<uint64_t, History> histories;  // by incarnation
    uint64_t pending_bytes = 0;
  };

  Result<std::optional<Message>> AddToPartial(uint32_t rank, const ChunkView& chunk, TimePoint now);
  Status MakeRoom(uint32_t rank, const PartialKey* keep, uint64_t more);
  bool EvictWeakest(std::optional<uint32_t> only, uint32_t keep_rank, const PartialKey* keep);
  static std::pair<uint64_t, size_t> ContiguousEarly(const Partial& p, uint32_t from);
  void Store(Partial& p, const ChunkHeader& h, std::span<const std::byte> payload);
  void Recharge(Sender& sender, Partial& p);
  void Erase(Sender& sender, std::map<PartialKey, Partial>::iterator it);
  void Drop(DropReason reason, uint32_t sender);
  std::optional<Message> Complete(uint32_t rank, uint64_t incarnation, uint64_t seq, Bytes payload,
                                  TimePoint now);

  ReassemblyLimits limits_;
  std::map<uint32_t, Sender> senders_;  // by claimed rank
  std::set<uint32_t> protected_;        // see Protect
  uint64_t pending_bytes_ = 0;
  uint64_t rejected_ = 0;
  DropObserver observer_;
};

}  // namespace p2p::broker
