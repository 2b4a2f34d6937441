#include "broker/chunking.h"

#include <gtest/gtest.h>

#include <numeric>
#include <optional>
#include <string>

#include "common/byte_pool.h"

namespace p2p::broker {
namespace {

Bytes Pattern(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<std::byte>((i * 131 + 7) & 0xff);
  return b;
}

ChunkHeader DataHeader(uint32_t rank, uint64_t seq) {
  ChunkHeader h{FrameKind::kData, rank};
  h.incarnation = 42;
  h.seq = seq;
  return h;
}

constexpr uint64_t kMax = 1 << 20;

Bytes ToBytes(const std::string& s) {
  return Bytes(reinterpret_cast<const std::byte*>(s.data()),
               reinterpret_cast<const std::byte*>(s.data()) + s.size());
}
std::string ToString(const Bytes& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

TEST(Chunking, SplitsAndReassemblesOutOfOrder) {
  Bytes payload = Pattern(1000);
  std::vector<Bytes> bodies = EncodeChunks(DataHeader(3, 1), payload, kChunkHeaderBytes + 300);
  ASSERT_EQ(bodies.size(), 4u);  // 300+300+300+100
  EXPECT_EQ(bodies.back().size(), kChunkHeaderBytes + 100);
  Reassembler r;
  for (int i : {2, 0, 3}) {
    auto m = r.Add(DecodeChunk(bodies[i], kMax).value());
    ASSERT_TRUE(m.ok());
    EXPECT_FALSE(m->has_value());
  }
  auto m = r.Add(DecodeChunk(bodies[1], kMax).value());
  ASSERT_TRUE(m.ok() && m->has_value());
  EXPECT_EQ((*m)->from_rank, 3);
  EXPECT_EQ((*m)->payload, payload);
}

TEST(Chunking, EmptyMessageIsOneChunk) {
  std::vector<Bytes> bodies = EncodeChunks(DataHeader(1, 1), {}, 1024);
  ASSERT_EQ(bodies.size(), 1u);
  Reassembler r;
  auto m = r.Add(DecodeChunk(bodies[0], kMax).value());
  ASSERT_TRUE(m.ok() && m->has_value());
  EXPECT_TRUE((*m)->payload.empty());
}

TEST(Chunking, DropsDuplicateChunksAndMessages) {
  Bytes payload = Pattern(500);
  std::vector<Bytes> bodies = EncodeChunks(DataHeader(0, 7), payload, kChunkHeaderBytes + 200);
  Reassembler r;
  EXPECT_FALSE(r.Add(DecodeChunk(bodies[0], kMax).value())->has_value());
  EXPECT_FALSE(r.Add(DecodeChunk(bodies[0], kMax).value())->has_value());  // redelivered
  EXPECT_FALSE(r.Add(DecodeChunk(bodies[1], kMax).value())->has_value());
  EXPECT_TRUE(r.Add(DecodeChunk(bodies[2], kMax).value())->has_value());
  for (const Bytes& b : bodies) {  // the whole message republished after a reconnect
    EXPECT_FALSE(r.Add(DecodeChunk(b, kMax).value())->has_value());
  }
}

TEST(Chunking, InterleavedSenders) {
  Bytes a = Pattern(700), b = Pattern(900);
  auto ca = EncodeChunks(DataHeader(1, 1), a, kChunkHeaderBytes + 256);
  auto cb = EncodeChunks(DataHeader(2, 1), b, kChunkHeaderBytes + 256);
  Reassembler r;
  int done = 0;
  for (size_t i = 0; i < std::max(ca.size(), cb.size()); ++i) {
    for (auto* chunks : {&ca, &cb}) {
      if (i >= chunks->size()) continue;
      auto m = r.Add(DecodeChunk((*chunks)[i], kMax).value());
      ASSERT_TRUE(m.ok());
      if (m->has_value()) {
        ++done;
        EXPECT_EQ((*m)->payload, (*m)->from_rank == 1 ? a : b);
      }
    }
  }
  EXPECT_EQ(done, 2);
}

TEST(Chunking, RejectsMalformed) {
  Bytes body = EncodeChunks(DataHeader(0, 1), Pattern(100), 1024).front();
  EXPECT_FALSE(DecodeChunk(std::span(body).first(10), kMax).ok());  // truncated header
  Bytes bad_magic = body;
  bad_magic[0] = std::byte{0};
  EXPECT_FALSE(DecodeChunk(bad_magic, kMax).ok());
  Bytes truncated(body.begin(), body.end() - 1);
  EXPECT_FALSE(DecodeChunk(truncated, kMax).ok());  // payload shorter than the header says
  EXPECT_FALSE(DecodeChunk(body, 99).ok());         // over the size limit
  Bytes bad_kind = body;
  bad_kind[5] = std::byte{9};
  EXPECT_FALSE(DecodeChunk(bad_kind, kMax).ok());
}

TEST(Chunking, BoundsIncompleteMessagesPerSender) {
  ReassemblyLimits limits;
  limits.max_partial_per_sender = 2;
  Reassembler r(limits);
  const auto t0 = Clock::now();
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    auto c = EncodeChunks(DataHeader(0, seq), Pattern(400), kChunkHeaderBytes + 200);
    ASSERT_TRUE(r.Add(DecodeChunk(c[0], kMax).value(), t0 + std::chrono::milliseconds(seq)).ok());
  }
  EXPECT_EQ(r.pending_messages(), 2u);  // the least recently active one (seq 1) was dropped
  EXPECT_EQ(r.rejected(), 1u);
}

// ---------------------------------------------------------------- hostile chunks (issue 17, 1b)

// A P2PA data frame built byte by byte, as an attacker would: header fields as given, then
// `payload_len` bytes.
Bytes ForgedFrame(uint32_t rank, uint64_t incarnation, uint64_t seq, uint64_t total,
                  uint32_t stride, uint32_t count, uint32_t index, size_t payload_len) {
  Bytes f(kChunkHeaderBytes + payload_len, std::byte{0x5a});
  auto put = [&f](size_t at, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i) f[at + i] = static_cast<std::byte>(v >> (8 * i));
  };
  put(0, 0x41503250, 4);  // "P2PA"
  put(4, 1, 1);           // version
  put(5, 1, 1);           // kind: data
  put(6, 0, 2);
  put(8, rank, 4);
  put(12, index, 4);
  put(16, count, 4);
  put(20, stride, 4);
  put(24, incarnation, 8);
  put(32, seq, 8);
  put(40, total, 8);
  return f;
}

constexpr uint64_t kEnvelopeLimit = uint64_t{256} << 20;

TEST(ChunkReassemblerHostile, FortyNineByteFrameClaimingGigabytesIsRejectedBeforeAllocating) {
  // 4 GiB - 1 in strides of 1 byte: the frame is chunk 0, one byte long.
  const Bytes frame = ForgedFrame(1, 7, 1, 0xFFFFFFFFull, 1, 0xFFFFFFFFu, 0, 1);
  ASSERT_EQ(frame.size(), 49u);
  Result<ChunkView> chunk = DecodeChunk(frame, kEnvelopeLimit);
  ASSERT_FALSE(chunk.ok());
  EXPECT_NE(chunk.status().message().find("over the"), std::string::npos)
      << chunk.status().ToString();
  // A reassembler fed by a caller with a looser decode limit still refuses it.
  Reassembler r;
  Result<std::optional<Message>> m = r.Add(DecodeChunk(frame, uint64_t{1} << 40).value());
  EXPECT_FALSE(m.ok());
  EXPECT_EQ(r.pending_bytes(), 0u);
  EXPECT_EQ(r.rejected(), 1u);
}

TEST(ChunkReassemblerHostile, OneByteChunkOfAMaximalMessageHoldsOnlyWhatArrived) {
  const uint64_t total = kEnvelopeLimit;  // allowed, so only the allocation policy protects us
  const Bytes frame = ForgedFrame(1, 7, 1, total, 1, static_cast<uint32_t>(total), 5, 1);
  Reassembler r;
  Result<std::optional<Message>> m = r.Add(DecodeChunk(frame, kEnvelopeLimit).value());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_FALSE(m->has_value());
  EXPECT_EQ(r.pending_messages(), 1u);
  EXPECT_LT(r.pending_bytes(), 1024u);  // was 256 MiB + 32 MiB of chunk flags before
  // In order from chunk 0: the buffer grows with what arrived, not with the announced total.
  const Bytes first = ForgedFrame(1, 7, 2, total, 1, static_cast<uint32_t>(total), 0, 1);
  ASSERT_TRUE(r.Add(DecodeChunk(first, kEnvelopeLimit).value()).ok());
  EXPECT_LT(r.pending_bytes(), 2048u);
}

TEST(ChunkReassemblerHostile, FloodOfForgedStartsStaysWithinTheBudgets) {
  ReassemblyLimits limits;
  limits.max_message_bytes = 4096;
  limits.max_pending_bytes_per_sender = 16 * 1024;
  limits.max_pending_bytes = 24 * 1024;
  Reassembler r(limits);
  const auto t0 = Clock::now();
  uint64_t peak = 0;
  for (uint32_t i = 0; i < 5000; ++i) {
    // Early chunks (index 1) of 2-chunk messages of 4096 bytes: 2048 bytes each, never complete;
    // the claimed rank and incarnation vary as an attacker's would.
    const Bytes frame = ForgedFrame(i % 3, 1000 + i, i, 4096, 2048, 2, 1, 2048);
    auto m = r.Add(DecodeChunk(frame, limits.max_message_bytes).value(),
                   t0 + std::chrono::microseconds(i));
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    peak = std::max(peak, r.pending_bytes());
  }
  EXPECT_LE(peak, limits.max_pending_bytes);
  EXPECT_LE(r.pending_messages(), 3 * limits.max_partial_per_sender);
  EXPECT_GE(r.rejected(), 5000u - r.pending_messages());  // every eviction counted
}

TEST(ChunkReassemblerHostile, GenuineTransferSurvivesForgedStartsBetweenItsChunks) {
  Reassembler r;
  const Bytes payload = Pattern(3000);
  auto genuine = EncodeChunks(DataHeader(0, 1), payload, kChunkHeaderBytes + 1000);
  ASSERT_EQ(genuine.size(), 3u);
  auto t = Clock::now();
  std::optional<Message> done;
  uint64_t forged_seq = 100;
  for (const Bytes& body : genuine) {
    t += std::chrono::milliseconds(1);
    auto m = r.Add(DecodeChunk(body, kMax).value(), t);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    if (m->has_value()) done = std::move(**m);
    for (int i = 0; i < 40; ++i) {  // more forged starts than a sender may have partials,
      // each more recent than the genuine chunk (so "least recently active" alone would drop it)
      const Bytes forged = ForgedFrame(0, 9, ++forged_seq, 200, 100, 2, 1, 100);
      ASSERT_TRUE(
          r.Add(DecodeChunk(forged, kMax).value(), t + std::chrono::microseconds(i + 1)).ok());
    }
  }
  ASSERT_TRUE(done.has_value()) << "the genuine message was evicted by forged ones";
  EXPECT_EQ(done->payload, payload);
}

TEST(ChunkReassemblerHostile, IncompleteMessagesTimeOut) {
  ReassemblyLimits limits;
  limits.timeout = std::chrono::seconds(30);
  Reassembler r(limits);
  const auto t0 = Clock::now();
  auto a = EncodeChunks(DataHeader(0, 1), Pattern(400), kChunkHeaderBytes + 200);
  auto b = EncodeChunks(DataHeader(1, 1), Pattern(400), kChunkHeaderBytes + 200);
  ASSERT_TRUE(r.Add(DecodeChunk(a[0], kMax).value(), t0).ok());
  ASSERT_TRUE(r.Add(DecodeChunk(b[0], kMax).value(), t0 + std::chrono::seconds(20)).ok());
  EXPECT_EQ(r.EvictStale(t0 + std::chrono::seconds(29)), 0u);
  EXPECT_EQ(r.EvictStale(t0 + std::chrono::seconds(31)), 1u);  // a's, idle for 31 s
  EXPECT_EQ(r.pending_messages(), 1u);
  EXPECT_EQ(r.rejected(), 1u);
  // b is still whole-able; a's remaining chunks start over and never complete.
  auto m = r.Add(DecodeChunk(b[1], kMax).value(), t0 + std::chrono::seconds(40));
  ASSERT_TRUE(m.ok() && m->has_value());
  EXPECT_EQ((*m)->payload, Pattern(400));
  EXPECT_EQ(r.pending_bytes(), 0u);
}

TEST(ChunkReassemblerHostile, ForgedFutureSeqDoesNotMakeTheGenuineMessageADuplicate) {
  Reassembler r;
  // The attacker read the genuine incarnation off the wire and claims the next seq first.
  auto forged = EncodeChunks(DataHeader(0, 5), ToBytes("forged"), 1024);
  auto genuine = EncodeChunks(DataHeader(0, 5), ToBytes("genuine"), 1024);
  auto f = r.Add(DecodeChunk(forged[0], kMax).value());
  ASSERT_TRUE(f.ok() && f->has_value());  // not ours to judge: the envelope MAC will reject it
  auto g = r.Add(DecodeChunk(genuine[0], kMax).value());
  ASSERT_TRUE(g.ok() && g->has_value()) << "the genuine message was dropped as a duplicate";
  EXPECT_EQ(ToString((*g)->payload), "genuine");
  EXPECT_EQ(r.rejected(), 0u);
  // Exact replays of either are dropped and counted.
  EXPECT_FALSE(r.Add(DecodeChunk(genuine[0], kMax).value())->has_value());
  EXPECT_FALSE(r.Add(DecodeChunk(forged[0], kMax).value())->has_value());
  EXPECT_EQ(r.rejected(), 2u);
}

TEST(ChunkReassemblerHostile, ForgedFirstChunkWithAnotherSizeDoesNotBlockTheGenuineMessage) {
  Reassembler r;
  const Bytes payload = Pattern(600);
  auto genuine = EncodeChunks(DataHeader(0, 3), payload, kChunkHeaderBytes + 200);
  auto forged = EncodeChunks(DataHeader(0, 3), Pattern(800), kChunkHeaderBytes + 200);
  ASSERT_TRUE(r.Add(DecodeChunk(forged[0], kMax).value()).ok());
  std::optional<Message> done;
  for (const Bytes& b : genuine) {
    auto m = r.Add(DecodeChunk(b, kMax).value());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    if (m->has_value()) done = std::move(**m);
  }
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->payload, payload);
}

TEST(ChunkReassemblerHostile, ForgedIncarnationsDoNotEvictAnActiveSendersReplayFilter) {
  Reassembler r;
  auto t = Clock::now();
  auto genuine = EncodeChunks(DataHeader(0, 1), ToBytes("round 1"), 1024);
  ASSERT_TRUE(r.Add(DecodeChunk(genuine[0], kMax).value(), t)->has_value());
  for (uint64_t inc = 1; inc <= 3; ++inc) {  // fewer than max_histories_per_sender
    ChunkHeader h = DataHeader(0, 1);
    h.incarnation = 1000 + inc;
    auto f = EncodeChunks(h, ToBytes("forged"), 1024);
    t += std::chrono::milliseconds(1);
    ASSERT_TRUE(r.Add(DecodeChunk(f[0], kMax).value(), t).ok());
  }
  t += std::chrono::milliseconds(1);
  EXPECT_FALSE(r.Add(DecodeChunk(genuine[0], kMax).value(), t)->has_value());  // still a replay
}

// ---------------------------------------------------------------- sender keys (ZeroMQ's use)

// ZeroMQ keys the reassembler by connection: two connections sending chunks with identical
// headers build two messages, each delivered as its own key; Forget frees one connection's state.
TEST(ChunkingKeyed, ConnectionsKeepApartAndForgetFreesTheirState) {
  const Bytes payload = Pattern(1000);
  const auto bodies = EncodeChunks(DataHeader(1, 1), payload, kChunkHeaderBytes + 300);
  ReassemblyLimits limits;
  limits.drop_replays = false;
  Reassembler r(limits);
  ASSERT_TRUE(r.Add(7, DecodeChunk(bodies[0], kMax).value()).ok());
  ASSERT_TRUE(r.Add(8, DecodeChunk(bodies[0], kMax).value()).ok());
  EXPECT_EQ(r.pending_messages(), 2u);
  const uint64_t both = r.pending_bytes();
  r.Forget(8);
  EXPECT_EQ(r.pending_messages(), 1u);
  EXPECT_LT(r.pending_bytes(), both);
  EXPECT_GT(r.pending_bytes(), 0u);
  std::optional<Message> done;
  for (size_t i = 1; i < bodies.size(); ++i) {
    auto m = r.Add(7, DecodeChunk(bodies[i], kMax).value());
    ASSERT_TRUE(m.ok());
    if (m->has_value()) done = std::move(**m);
  }
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->from_rank, 7);  // the key, which the transport maps to the claimed rank
  EXPECT_EQ(done->payload, payload);
  EXPECT_EQ(r.pending_bytes(), 0u);
  EXPECT_EQ(r.rejected(), 0u);  // forgetting a closed connection is not a drop
}

// Without the replay filter an identical message is delivered again (the mailbox judges it).
TEST(ChunkingKeyed, WithoutTheReplayFilterAnIdenticalMessageIsDeliveredAgain) {
  const auto body = EncodeChunks(DataHeader(1, 5), ToBytes("same"), 1024).at(0);
  ReassemblyLimits limits;
  limits.drop_replays = false;
  Reassembler r(limits);
  for (int i = 0; i < 2; ++i) {
    auto m = r.Add(3, DecodeChunk(body, kMax).value());
    ASSERT_TRUE(m.ok() && m->has_value()) << i;
  }
  EXPECT_EQ(r.rejected(), 0u);
}

// Every drop reaches the observer with its reason and the sender it was charged to.
TEST(ChunkingKeyed, TheObserverSeesEveryDropWithItsReasonAndSender) {
  ReassemblyLimits limits;
  limits.max_message_bytes = 1000;
  limits.max_pending_bytes_per_sender = 4000;
  limits.max_pending_bytes = 8000;
  limits.timeout = std::chrono::seconds(10);
  Reassembler r(limits);
  std::vector<std::pair<DropReason, uint32_t>> seen;
  r.set_drop_observer([&](DropReason why, uint32_t sender) { seen.emplace_back(why, sender); });
  const auto t0 = Reassembler::TimePoint{} + std::chrono::hours(1);
  const auto bodies = EncodeChunks(DataHeader(1, 1), Pattern(600), kChunkHeaderBytes + 200);
  ASSERT_TRUE(r.Add(4, DecodeChunk(bodies[0], kMax).value(), t0).ok());
  ASSERT_TRUE(r.Add(4, DecodeChunk(bodies[0], kMax).value(), t0).ok());  // a duplicate chunk
  const auto big = EncodeChunks(DataHeader(1, 2), Pattern(2000), 4096).at(0);
  EXPECT_FALSE(r.Add(5, DecodeChunk(big, kMax).value(), t0).ok());  // over max_message_bytes
  // Nothing from sender 4 for the timeout: its incomplete message is dropped on the next Add.
  const auto small = EncodeChunks(DataHeader(1, 3), ToBytes("x"), 1024).at(0);
  ASSERT_TRUE(r.Add(6, DecodeChunk(small, kMax).value(), t0 + limits.timeout).ok());
  const std::vector<std::pair<DropReason, uint32_t>> want = {
      {DropReason::kDuplicateChunk, 4}, {DropReason::kOverLimit, 5}, {DropReason::kTimeout, 4}};
  EXPECT_EQ(seen, want);
  EXPECT_EQ(r.rejected(), want.size());
  EXPECT_STREQ(DropReasonName(DropReason::kEvicted), "evicted");
}

// Issue 17 item 1: forged starts that carry more bytes than a genuine transfer has received so far
// used to evict it once the total budget was full (fewest bytes go first). A protected sender (a
// ZeroMQ connection the layer above authenticated) keeps its transfer; the forgers pay instead.
TEST(ChunkingKeyed, AProtectedSendersTransferIsNeverEvictedForUnprotectedOnes) {
  ReassemblyLimits limits;
  limits.max_message_bytes = 4096;
  limits.max_pending_bytes_per_sender = 16 * 1024;
  limits.max_pending_bytes = 24 * 1024;
  limits.drop_replays = false;
  Reassembler r(limits);
  constexpr uint32_t kGenuine = 7;
  r.Protect(kGenuine, true);
  const Bytes payload = Pattern(4096);
  const auto genuine = EncodeChunks(DataHeader(1, 1), payload, kChunkHeaderBytes + 1024);
  ASSERT_EQ(genuine.size(), 4u);
  auto t = Clock::now();
  std::optional<Message> done;
  uint64_t forged_seq = 100;
  for (const Bytes& body : genuine) {
    t += std::chrono::milliseconds(1);
    auto m = r.Add(kGenuine, DecodeChunk(body, kMax).value(), t);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    if (m->has_value()) done = std::move(**m);
    // Three forging connections each start messages whose first chunk (2048 bytes) is more than
    // the genuine transfer has received, until the total budget is full many times over.
    for (uint32_t i = 0; i < 60; ++i) {
      const Bytes forged = ForgedFrame(1, 9, ++forged_seq, 4096, 2048, 2, 0, 2048);
      (void)r.Add(8 + i % 3, DecodeChunk(forged, kMax).value(), t + std::chrono::microseconds(i));
      ASSERT_LE(r.pending_bytes(), limits.max_pending_bytes);
    }
  }
  ASSERT_TRUE(done.has_value()) << "the authenticated transfer was evicted for forged ones";
  EXPECT_EQ(done->payload, payload);
  EXPECT_GT(r.rejected(), 0u);  // the forgers' starts were dropped and counted instead
}

// Without protection the same traffic does evict the genuine transfer: the test above is not
// vacuous, and an unprotected sender is judged by bytes received alone, as before.
TEST(ChunkingKeyed, AnUnprotectedTransferCanBeEvictedByHeavierForgedStarts) {
  ReassemblyLimits limits;
  limits.max_message_bytes = 4096;
  limits.max_pending_bytes_per_sender = 16 * 1024;
  limits.max_pending_bytes = 24 * 1024;
  limits.drop_replays = false;
  Reassembler r(limits);
  const auto genuine = EncodeChunks(DataHeader(1, 1), Pattern(4096), kChunkHeaderBytes + 1024);
  auto t = Clock::now();
  ASSERT_TRUE(r.Add(7, DecodeChunk(genuine[0], kMax).value(), t).ok());
  for (uint32_t i = 0; i < 60; ++i) {
    const Bytes forged = ForgedFrame(1, 9, 100 + i, 4096, 2048, 2, 0, 2048);
    (void)r.Add(8 + i % 3, DecodeChunk(forged, kMax).value(), t + std::chrono::microseconds(i));
  }
  // The genuine partial (1024 bytes received) went first: its other chunks complete nothing.
  for (size_t i = 1; i < genuine.size(); ++i) {
    auto m = r.Add(7, DecodeChunk(genuine[i], kMax).value(), t + std::chrono::milliseconds(i));
    EXPECT_FALSE(m.ok() && m->has_value()) << "chunk " << i;
  }
}

// ------------------------------------------------------------------ buffers from the BytePool

constexpr size_t kKiB = 1024;

// Feeds every chunk of `payload` (seq `seq`, strides of `stride` bytes) in order; the message.
std::optional<Message> FeedAll(Reassembler& r, uint64_t seq, const Bytes& payload, size_t stride,
                               uint64_t* peak_pending = nullptr) {
  std::optional<Message> out;
  for (const Bytes& body : EncodeChunks(DataHeader(2, seq), payload, kChunkHeaderBytes + stride)) {
    auto m = r.Add(DecodeChunk(body, uint64_t{1} << 30).value());
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    if (peak_pending != nullptr) *peak_pending = std::max(*peak_pending, r.pending_bytes());
    if (m.ok() && m->has_value()) out = std::move(**m);
  }
  return out;
}

TEST(ChunkingPool, AHeldBufferReceivesTheMessageButTheChargeIsWhatArrived) {
  BytePool& pool = BytePool::Global();
  pool.Clear();
  Bytes stale(4 * kKiB * kKiB, std::byte{0xee});  // stale bytes must never show through
  const std::byte* memory = stale.data();
  pool.Give(std::move(stale));
  const Bytes payload = Pattern(3 * kKiB * kKiB + 5);
  Reassembler r;
  // The first chunk alone: charged for its 64 KiB, not for the 4 MiB buffer it landed in.
  const std::vector<Bytes> bodies =
      EncodeChunks(DataHeader(2, 1), payload, kChunkHeaderBytes + 64 * kKiB);
  ASSERT_TRUE(r.Add(DecodeChunk(bodies[0], uint64_t{1} << 30).value()).ok());
  EXPECT_LT(r.pending_bytes(), 65 * kKiB);
  EXPECT_EQ(pool.stats().held_buffers, 0u);
  std::optional<Message> m;
  for (size_t i = 1; i < bodies.size(); ++i) {
    auto got = r.Add(DecodeChunk(bodies[i], uint64_t{1} << 30).value());
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    if (got->has_value()) m = std::move(**got);
  }
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->payload, payload);
  EXPECT_EQ(m->payload.data(), memory);  // no regrowth: the held buffer took it all
  EXPECT_EQ(r.pending_bytes(), 0u);
}

TEST(ChunkingPool, MessagesOfDifferentSizesInARowReuseAndStayExact) {
  BytePool& pool = BytePool::Global();
  pool.Clear();
  Reassembler r;
  uint64_t seq = 1;
  // Large, smaller (fits the large buffer), larger than anything held (fresh), tiny (one chunk).
  for (size_t n : {size_t{2} << 20, size_t{1} << 20, size_t{5} << 20, size_t{300}}) {
    const Bytes payload = Pattern(n + seq);
    std::optional<Message> m = FeedAll(r, seq++, payload, 256 * kKiB);
    ASSERT_TRUE(m.has_value()) << n;
    EXPECT_EQ(m->payload, payload) << n;
    pool.Give(std::move(m->payload));  // as the strategies do after a round
  }
  EXPECT_GE(pool.stats().hits, 1u);
  EXPECT_EQ(r.pending_bytes(), 0u);
  EXPECT_EQ(r.rejected(), 0u);
}

TEST(ChunkingPool, OversizedAndTruncatedFramesAreStillRefusedAndTakeNothing) {
  BytePool& pool = BytePool::Global();
  pool.Clear();
  pool.Give(Bytes(8 * kKiB * kKiB));
  ReassemblyLimits limits;
  limits.max_message_bytes = 4 * kKiB * kKiB;
  limits.max_pending_bytes_per_sender = 16 * kKiB * kKiB;
  limits.max_pending_bytes = 32 * kKiB * kKiB;
  Reassembler r(limits);
  // Announces one byte over the limit: refused before anything is taken or allocated.
  const Bytes over = ForgedFrame(2, 7, 1, limits.max_message_bytes + 1, 1 << 20, 5, 0, 1 << 20);
  EXPECT_FALSE(r.Add(DecodeChunk(over, uint64_t{1} << 30).value()).ok());
  // A chunk shorter than its geometry says: refused by the decoder.
  Bytes truncated = ForgedFrame(2, 7, 2, 3 << 20, 1 << 20, 3, 0, 1 << 20);
  truncated.resize(truncated.size() - 1);
  EXPECT_FALSE(DecodeChunk(truncated, limits.max_message_bytes).ok());
  EXPECT_EQ(r.pending_bytes(), 0u);
  EXPECT_EQ(pool.stats().held_buffers, 1u);  // still there for a genuine message
}

TEST(ChunkingPool, ADroppedIncompleteMessageGivesItsBufferBack) {
  BytePool& pool = BytePool::Global();
  pool.Clear();
  pool.Give(Bytes(2 * kKiB * kKiB));
  ReassemblyLimits limits;
  limits.timeout = std::chrono::milliseconds(10);
  Reassembler r(limits);
  const auto t0 = Clock::now();
  const Bytes first = ForgedFrame(2, 7, 1, 2 << 20, 1 << 20, 2, 0, 1 << 20);
  ASSERT_TRUE(r.Add(DecodeChunk(first, uint64_t{1} << 30).value(), t0).ok());
  EXPECT_EQ(pool.stats().held_buffers, 0u);  // the partial holds it
  EXPECT_EQ(r.EvictStale(t0 + std::chrono::seconds(1)), 1u);
  EXPECT_EQ(pool.stats().held_buffers, 1u);
  EXPECT_EQ(r.pending_bytes(), 0u);
}

}  // namespace
}  // namespace p2p::broker
