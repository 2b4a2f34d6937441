// BytePool: a bounded, process-wide cache of large byte buffers, so that the multi-megabyte
// messages of every gradient round reuse memory the process already touched instead of fresh
// pages.
//
// Why: glibc serves blocks over its mmap threshold (at most 32 MiB, common/malloc_tuning.h) with a
// fresh mmap and unmaps them on free, so every round of a 10M-float model page-faulted its
// 40 MB messages in again: 4 peers on loopback took ~300k minor faults and most of their CPU
// time in the kernel per allgather round. Buffers handed back with Give are kept (up to a byte
// budget) and handed out again by Take.
//
// Only memory the pool already holds is reused: Take never allocates more than asked, and what
// the pool holds is bounded by its budget, so a caller that takes on behalf of untrusted input
// (broker/chunking.h) can make the process hold no more than before. Buffers are handed out
// empty (size 0); their old contents are never observable through the vector.
//
// Thread-safety: every member may be called from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

namespace p2p {

class BytePool {
 public:
  struct Limits {
    size_t min_bytes = size_t{256} << 10;  // smaller buffers are cheap for malloc: not kept
    size_t max_bytes = size_t{1} << 30;    // capacity kept in all, oldest given back first
  };
  struct Stats {
    uint64_t hits = 0;    // Take / TakeHeld served from the pool
    uint64_t misses = 0;  // Take that allocated
    size_t held_bytes = 0;
    size_t held_buffers = 0;
  };

  BytePool() = default;
  explicit BytePool(Limits limits) : limits_(limits) {}
  BytePool(const BytePool&) = delete;
  BytePool& operator=(const BytePool&) = delete;

  // The one pool the transports, the envelope codec and the strategies share.
  static BytePool& Global();

  // An empty buffer with capacity >= `capacity`: the smallest held one that fits and is not
  // more than twice as large (so a small request does not pin a huge block), else a new one.
  std::vector<std::byte> Take(size_t capacity);
  // The same, but only from what the pool holds: nullopt instead of allocating.
  std::optional<std::vector<std::byte>> TakeHeld(size_t capacity);
  // Keeps `buffer`'s memory for a later Take when its capacity is at least min_bytes; evicts
  // the oldest held buffers to stay within max_bytes. `buffer` is left empty either way.
  void Give(std::vector<std::byte>&& buffer);
  // Frees everything held (e.g. after the last round, or in tests).
  void Clear();

  Stats stats() const;
  void set_limits(Limits limits);

 private:
  std::optional<std::vector<std::byte>> TakeLocked(size_t capacity);
  void TrimLocked(size_t max_bytes);

  mutable std::mutex mu_;
  Limits limits_;
  std::vector<std::vector<std::byte>> held_;  // oldest first
  size_t held_bytes_ = 0;
  uint64_t hits_ = 0, misses_ = 0;
};

// Gives `buffer` to BytePool::Global() when the scope ends, on every path out of it.
class ReturnToPool {
 public:
  explicit ReturnToPool(std::vector<std::byte>& buffer) : buffer_(buffer) {}
  ReturnToPool(const ReturnToPool&) = delete;
  ReturnToPool& operator=(const ReturnToPool&) = delete;
  ~ReturnToPool() { BytePool::Global().Give(std::move(buffer_)); }

 private:
  std::vector<std::byte>& buffer_;
};

}  // namespace p2p
