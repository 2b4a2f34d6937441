#include "broker/chunking.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace p2p::broker {
namespace {

Bytes Pattern(size_t n, uint8_t seed = 0) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<std::byte>((i * 131 + seed) & 0xff);
  return b;
}

// Feeds frames in the given order; returns the completed message (exactly one expected).
std::optional<Bytes> Feed(Reassembler& r, int sender, const std::vector<Bytes>& frames) {
  std::optional<Bytes> done;
  for (const Bytes& f : frames) {
    Result<std::optional<Bytes>> out = r.Accept(sender, f);
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    if (out.ok() && out->has_value()) {
      EXPECT_FALSE(done.has_value()) << "message completed twice";
      done = std::move(**out);
    }
  }
  return done;
}

TEST(ChunkingTest, ChunkCountAndRanges) {
  EXPECT_EQ(ChunkCount(0, 10), 1u);
  EXPECT_EQ(ChunkCount(1, 10), 1u);
  EXPECT_EQ(ChunkCount(10, 10), 1u);
  EXPECT_EQ(ChunkCount(11, 10), 2u);
  EXPECT_EQ(ChunkCount(101, 10), 11u);
  // 11 bytes in 2 chunks: stride 6 -> [0,6) and [6,11).
  EXPECT_EQ(ChunkRange({1, 0, 2, 11}), std::make_pair(uint64_t{0}, uint64_t{6}));
  EXPECT_EQ(ChunkRange({1, 1, 2, 11}), std::make_pair(uint64_t{6}, uint64_t{11}));
}

TEST(ChunkingTest, HeaderRoundTrip) {
  const ChunkHeader h{0x0102030405060708ull, 2, 5, 4321};
  const auto bytes = EncodeChunkHeader(h);
  EXPECT_TRUE(IsChunkFrame(bytes));
  Bytes frame(bytes.begin(), bytes.end());
  frame.resize(kChunkHeaderBytes + ChunkRange(h).second - ChunkRange(h).first);
  Result<ChunkHeader> back = DecodeChunkHeader(frame);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, h);
}

TEST(ChunkingTest, SplitAndReassembleManySizes) {
  constexpr size_t kMax = 1000;
  for (size_t n : {size_t{0}, size_t{1}, kMax - 1, kMax, kMax + 1, 10 * kMax + 3}) {
    SCOPED_TRACE(n);
    const Bytes msg = Pattern(n);
    const std::vector<Bytes> frames = SplitIntoChunks(7, msg, kMax);
    EXPECT_EQ(frames.size(), ChunkCount(n, kMax));
    for (const Bytes& f : frames) EXPECT_LE(f.size(), kChunkHeaderBytes + kMax);
    Reassembler r;
    EXPECT_EQ(Feed(r, 1, frames), msg);
    EXPECT_EQ(r.pending_messages(), 0u);
    EXPECT_EQ(r.pending_bytes(), 0u);
  }
}

TEST(ChunkingTest, ReassemblesShuffledAndInterleavedMessages) {
  const Bytes a = Pattern(5000, 1), b = Pattern(3333, 2);
  std::vector<Bytes> fa = SplitIntoChunks(1, a, 700), fb = SplitIntoChunks(2, b, 700);
  std::mt19937 rng(5);
  std::shuffle(fa.begin(), fa.end(), rng);
  std::shuffle(fb.begin(), fb.end(), rng);
  Reassembler r;
  std::vector<Bytes> done;
  for (size_t i = 0; i < std::max(fa.size(), fb.size()); ++i) {
    for (const auto* frames : {&fa, &fb}) {
      if (i >= frames->size()) continue;
      auto out = r.Accept(3, (*frames)[i]);
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      if (out->has_value()) done.push_back(std::move(**out));
    }
  }
  ASSERT_EQ(done.size(), 2u);
  EXPECT_TRUE((done[0] == a && done[1] == b) || (done[0] == b && done[1] == a));
}

TEST(ChunkingTest, SameMessageIdFromDifferentSendersIsKeptApart) {
  const Bytes a = Pattern(2000, 1), b = Pattern(2000, 9);
  auto fa = SplitIntoChunks(1, a, 500), fb = SplitIntoChunks(1, b, 500);
  Reassembler r;
  for (size_t i = 0; i + 1 < fa.size(); ++i) {
    ASSERT_TRUE(r.Accept(0, fa[i]).ok());
    ASSERT_TRUE(r.Accept(1, fb[i]).ok());
  }
  EXPECT_EQ(**r.Accept(0, fa.back()), a);
  EXPECT_EQ(**r.Accept(1, fb.back()), b);
}

TEST(ChunkingTest, RejectsMalformedHeaders) {
  const Bytes good = SplitIntoChunks(1, Pattern(100), 30)[1];
  auto expect_bad = [](Bytes f, std::string_view why) {
    Reassembler r;
    auto out = r.Accept(0, f);
    EXPECT_FALSE(out.ok()) << why;
    EXPECT_EQ(r.rejected(), 1u) << why;
  };
  expect_bad(Bytes(good.begin(), good.begin() + 10), "short");
  Bytes f = good;
  f[0] = std::byte{'X'};
  expect_bad(f, "magic");
  f = good;
  f[4] = std::byte{9};
  expect_bad(f, "version");
  f = good;
  f[6] = std::byte{1};
  expect_bad(f, "reserved");
  f = good;
  f[16] = std::byte{4};  // index 4 of 4
  expect_bad(f, "index");
  f = good;
  f[20] = std::byte{200};  // 200 chunks of 100 bytes leaves empty chunks
  expect_bad(f, "count > total");
  f = good;
  f.push_back(std::byte{0});
  expect_bad(f, "payload longer than the header implies");
  f = good;
  f[31] = std::byte{0xff};  // total 2^56 + 100
  expect_bad(f, "absurd total");
}

TEST(ChunkingTest, RejectsOversizedTotalsBeforeAllocating) {
  Reassembler r({/*max_message_bytes=*/1000, /*max_pending_bytes=*/5000, 4});
  const auto frames = SplitIntoChunks(1, Pattern(2000), 100);
  auto out = r.Accept(0, frames[0]);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("exceeds the limit"), std::string::npos);
  EXPECT_EQ(r.pending_bytes(), 0u);
  // A single-frame message over the limit is rejected too.
  EXPECT_FALSE(r.Accept(0, SplitIntoChunks(2, Pattern(1001), 2000)[0]).ok());
  EXPECT_EQ(r.rejected(), 2u);
}

TEST(ChunkingTest, EnforcesThePendingBudget) {
  Reassembler r({/*max_message_bytes=*/1000, /*max_pending_bytes=*/1500, 4});
  ASSERT_TRUE(r.Accept(0, SplitIntoChunks(1, Pattern(1000), 100)[0]).ok());
  EXPECT_EQ(r.pending_bytes(), 1000u);
  auto out = r.Accept(1, SplitIntoChunks(1, Pattern(1000), 100)[0]);
  EXPECT_EQ(out.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.pending_bytes(), 1000u);
}

TEST(ChunkingTest, RejectsDuplicateAndInconsistentChunks) {
  Reassembler r;
  const auto frames = SplitIntoChunks(1, Pattern(1000), 100);
  ASSERT_TRUE(r.Accept(0, frames[0]).ok());
  EXPECT_FALSE(r.Accept(0, frames[0]).ok());
  const auto other_shape = SplitIntoChunks(1, Pattern(900), 100);  // same id, other total
  EXPECT_FALSE(r.Accept(0, other_shape[1]).ok());
  EXPECT_EQ(r.rejected(), 2u);
  // The message still completes from the remaining genuine frames.
  std::optional<Bytes> done;
  for (size_t i = 1; i < frames.size(); ++i) {
    auto out = r.Accept(0, frames[i]);
    ASSERT_TRUE(out.ok());
    if (out->has_value()) done = **out;
  }
  EXPECT_EQ(done, Pattern(1000));
}

TEST(ChunkingTest, EvictsOldestIncompleteMessagePerSender) {
  Reassembler r({1000, 100000, /*max_pending_per_sender=*/2});
  for (uint64_t id = 1; id <= 3; ++id) {
    ASSERT_TRUE(r.Accept(0, SplitIntoChunks(id, Pattern(300), 100)[0]).ok());
  }
  EXPECT_EQ(r.pending_messages(), 2u);
  EXPECT_EQ(r.rejected(), 1u);  // message 1 dropped, counted
  // Message 1's later frames start a fresh (incomplete) entry; messages 2 and 3 still complete.
  const auto m3 = SplitIntoChunks(3, Pattern(300), 100);
  ASSERT_TRUE(r.Accept(0, m3[1]).ok());
  EXPECT_EQ(**r.Accept(0, m3[2]), Pattern(300));
}

TEST(ChunkingTest, DropsStaleIncompleteMessages) {
  Reassembler r;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(r.Accept(0, SplitIntoChunks(1, Pattern(300), 100)[0], t0).ok());
  ASSERT_TRUE(
      r.Accept(1, SplitIntoChunks(1, Pattern(300), 100)[0], t0 + std::chrono::seconds(5)).ok());
  EXPECT_EQ(r.DropStale(t0 + std::chrono::seconds(1)), 1u);
  EXPECT_EQ(r.rejected(), 1u);
  EXPECT_EQ(r.pending_messages(), 1u);
  EXPECT_EQ(r.pending_bytes(), 300u);
}

TEST(ChunkingTest, ForEachChunkStopsAtTheFirstError) {
  int calls = 0;
  Status s = ForEachChunk(1, Pattern(1000), 100, [&](auto, auto) {
    return ++calls == 3 ? Unavailable("peer gone") : Status::Ok();
  });
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(calls, 3);
}

}  // namespace
}  // namespace p2p::broker
