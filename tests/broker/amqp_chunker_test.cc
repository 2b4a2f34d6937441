#include "broker/amqp_chunker.h"

#include <gtest/gtest.h>

#include <numeric>

namespace p2p::broker::amqp {
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

TEST(AmqpChunker, SplitsAndReassemblesOutOfOrder) {
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

TEST(AmqpChunker, EmptyMessageIsOneChunk) {
  std::vector<Bytes> bodies = EncodeChunks(DataHeader(1, 1), {}, 1024);
  ASSERT_EQ(bodies.size(), 1u);
  Reassembler r;
  auto m = r.Add(DecodeChunk(bodies[0], kMax).value());
  ASSERT_TRUE(m.ok() && m->has_value());
  EXPECT_TRUE((*m)->payload.empty());
}

TEST(AmqpChunker, DropsDuplicateChunksAndMessages) {
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

TEST(AmqpChunker, InterleavedSenders) {
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

TEST(AmqpChunker, RejectsMalformed) {
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

TEST(AmqpChunker, RejectsContradictingChunks) {
  auto first = EncodeChunks(DataHeader(0, 5), Pattern(600), kChunkHeaderBytes + 200);
  auto other = EncodeChunks(DataHeader(0, 5), Pattern(800), kChunkHeaderBytes + 200);
  Reassembler r;
  ASSERT_TRUE(r.Add(DecodeChunk(first[0], kMax).value()).ok());
  EXPECT_FALSE(r.Add(DecodeChunk(other[1], kMax).value()).ok());  // same seq, other size
}

TEST(AmqpChunker, BoundsIncompleteMessagesPerSender) {
  Reassembler r(/*max_partial=*/2);
  for (uint64_t seq = 1; seq <= 2; ++seq) {
    auto c = EncodeChunks(DataHeader(0, seq), Pattern(400), kChunkHeaderBytes + 200);
    ASSERT_TRUE(r.Add(DecodeChunk(c[0], kMax).value()).ok());
  }
  auto c = EncodeChunks(DataHeader(0, 3), Pattern(400), kChunkHeaderBytes + 200);
  EXPECT_FALSE(r.Add(DecodeChunk(c[0], kMax).value()).ok());
}

}  // namespace
}  // namespace p2p::broker::amqp
