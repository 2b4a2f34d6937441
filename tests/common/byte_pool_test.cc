#include "common/byte_pool.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace p2p {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

std::vector<std::byte> Filled(size_t n) { return std::vector<std::byte>(n, std::byte{0xab}); }

TEST(BytePool, AGivenBufferIsTakenBackEmptyWithItsMemory) {
  BytePool pool;
  std::vector<std::byte> b = Filled(2 * kMiB);
  const std::byte* memory = b.data();
  pool.Give(std::move(b));
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(pool.stats().held_bytes, 2 * kMiB);
  std::vector<std::byte> again = pool.Take(kMiB + 1);
  EXPECT_EQ(again.data(), memory);
  EXPECT_TRUE(again.empty());  // old contents are not observable through the vector
  EXPECT_GE(again.capacity(), 2 * kMiB);
  EXPECT_EQ(pool.stats().hits, 1u);
  EXPECT_EQ(pool.stats().held_buffers, 0u);
}

TEST(BytePool, TakesTheSmallestFitNeverMoreThanTwiceTheRequest) {
  BytePool pool;
  pool.Give(Filled(8 * kMiB));
  pool.Give(Filled(2 * kMiB));
  EXPECT_EQ(pool.Take(kMiB).capacity(), 2 * kMiB);
  // 8 MiB is more than twice 1 MiB: a new buffer, the big one stays for a big request.
  EXPECT_EQ(pool.Take(kMiB).capacity(), kMiB);
  EXPECT_EQ(pool.stats().misses, 1u);
  EXPECT_FALSE(pool.TakeHeld(9 * kMiB).has_value());  // too small for that: nothing allocated
  EXPECT_EQ(pool.TakeHeld(5 * kMiB)->capacity(), 8 * kMiB);
  EXPECT_EQ(pool.stats().held_bytes, 0u);
}

TEST(BytePool, KeepsOnlyLargeBuffersWithinItsBudgetOldestOut) {
  BytePool pool({.min_bytes = kMiB, .max_bytes = 5 * kMiB});
  pool.Give(Filled(kMiB / 2));  // small: freed
  EXPECT_EQ(pool.stats().held_buffers, 0u);
  pool.Give(Filled(6 * kMiB));  // over the whole budget: freed
  EXPECT_EQ(pool.stats().held_buffers, 0u);
  pool.Give(Filled(2 * kMiB));
  pool.Give(Filled(3 * kMiB));
  pool.Give(Filled(kMiB));  // 6 MiB held would exceed 5: the oldest (2 MiB) goes
  EXPECT_EQ(pool.stats().held_bytes, 4 * kMiB);
  EXPECT_EQ(pool.TakeHeld(2 * kMiB)->capacity(), 3 * kMiB);  // the 2 MiB one is gone
  pool.Clear();
  EXPECT_EQ(pool.stats().held_bytes, 0u);
  EXPECT_EQ(pool.stats().held_buffers, 0u);
}

TEST(BytePool, SmallRequestsBypassThePool) {
  BytePool pool;
  pool.Give(Filled(kMiB));
  std::vector<std::byte> small = pool.Take(100);
  EXPECT_GE(small.capacity(), 100u);
  EXPECT_LT(small.capacity(), kMiB);
  EXPECT_EQ(pool.stats().held_buffers, 1u);
  EXPECT_FALSE(pool.TakeHeld(100).has_value());
}

TEST(BytePool, ManyThreadsTakeAndGiveWithinTheBudget) {
  BytePool pool({.min_bytes = kMiB, .max_bytes = 8 * kMiB});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&pool, t] {
      for (int i = 0; i < 200; ++i) {
        std::vector<std::byte> b = pool.Take(kMiB + static_cast<size_t>((i + t) % 3) * kMiB);
        b.resize(b.capacity() / 2, std::byte{1});
        pool.Give(std::move(b));
      }
    });
  }
  for (auto& th : threads) th.join();
  const BytePool::Stats s = pool.stats();
  EXPECT_LE(s.held_bytes, 8 * kMiB);
  EXPECT_EQ(s.hits + s.misses, 800u);
  EXPECT_GT(s.hits, 0u);
}

}  // namespace
}  // namespace p2p
