#include "common/byte_pool.h"

#include <utility>

namespace p2p {

BytePool& BytePool::Global() {
  static BytePool* pool = new BytePool();  // never destroyed: usable until the process exits
  return *pool;
}

std::optional<std::vector<std::byte>> BytePool::TakeLocked(size_t capacity) {
  size_t best = held_.size();
  for (size_t i = 0; i < held_.size(); ++i) {
    const size_t c = held_[i].capacity();
    if (c < capacity || c / 2 > capacity) continue;
    if (best == held_.size() || c < held_[best].capacity()) best = i;
  }
  if (best == held_.size()) return std::nullopt;
  std::vector<std::byte> out = std::move(held_[best]);
  held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(best));
  held_bytes_ -= out.capacity();
  ++hits_;
  return out;
}

std::optional<std::vector<std::byte>> BytePool::TakeHeld(size_t capacity) {
  std::lock_guard lock(mu_);
  if (capacity < limits_.min_bytes) return std::nullopt;
  return TakeLocked(capacity);
}

std::vector<std::byte> BytePool::Take(size_t capacity) {
  {
    std::lock_guard lock(mu_);
    if (capacity >= limits_.min_bytes) {
      if (auto held = TakeLocked(capacity)) return std::move(*held);
      ++misses_;
    }
  }
  std::vector<std::byte> out;
  out.reserve(capacity);
  return out;
}

void BytePool::TrimLocked(size_t max_bytes) {
  size_t drop = 0;
  while (drop < held_.size() && held_bytes_ > max_bytes) held_bytes_ -= held_[drop++].capacity();
  held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(drop));
}

void BytePool::Give(std::vector<std::byte>&& buffer) {
  std::vector<std::byte> mine = std::move(buffer);
  buffer.clear();  // a moved-from vector is valid but unspecified: make it empty
  const size_t c = mine.capacity();
  std::lock_guard lock(mu_);
  if (c < limits_.min_bytes || c > limits_.max_bytes) return;  // freed on return
  mine.clear();
  TrimLocked(limits_.max_bytes - c);
  held_bytes_ += c;
  held_.push_back(std::move(mine));
}

void BytePool::Clear() {
  std::vector<std::vector<std::byte>> drop;
  {
    std::lock_guard lock(mu_);
    drop.swap(held_);
    held_bytes_ = 0;
  }
}

BytePool::Stats BytePool::stats() const {
  std::lock_guard lock(mu_);
  return {hits_, misses_, held_bytes_, held_.size()};
}

void BytePool::set_limits(Limits limits) {
  std::lock_guard lock(mu_);
  limits_ = limits;
  TrimLocked(limits_.max_bytes);
}

}  // namespace p2p
