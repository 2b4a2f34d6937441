#include "sync/epoch_summary.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <set>

namespace p2p::sync {
namespace {

constexpr size_t kHashChars = 16;
constexpr size_t kBodyBytes = 6 * 8 + kHashChars;

template <typename T>
void Put(broker::Bytes& out, T v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

template <typename T>
T Get(std::span<const std::byte> body, size_t& pos) {
  T v;
  std::memcpy(&v, body.data() + pos, sizeof(T));
  pos += sizeof(T);
  return v;
}

bool IsHexHash(const std::string& s) {
  if (s.size() != kHashChars) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

std::vector<float> WeightedMeanBuffers(const std::vector<const EpochTotals*>& members) {
  if (members.empty()) return {};
  uint64_t total = 0;
  for (const EpochTotals* t : members) total += t->train_samples;
  const size_t n = members.front()->buffers.size();
  std::vector<double> acc(n, 0.0);
  for (const EpochTotals* t : members) {
    // A rank that trained nothing this epoch kept the buffers all agreed on last epoch; giving it
    // weight 0 lets the ranks that did train decide.
    const double w = total > 0 ? double(t->train_samples) : 1.0;
    for (size_t i = 0; i < n; ++i) acc[i] += w * double(t->buffers[i]);
  }
  const double denom = total > 0 ? double(total) : double(members.size());
  std::vector<float> mean(n);
  for (size_t i = 0; i < n; ++i) mean[i] = static_cast<float>(acc[i] / denom);
  return mean;
}

broker::Bytes EncodeEpochTotals(const EpochTotals& t) {
  broker::Bytes out;
  out.reserve(kBodyBytes);
  Put(out, t.train_loss_sum);
  Put(out, t.train_samples);
  Put(out, t.val_loss_sum);
  Put(out, t.val_samples);
  Put(out, t.test_correct);
  Put(out, t.test_samples);
  std::string hash = t.param_hash;
  hash.resize(kHashChars, '0');
  const auto* p = reinterpret_cast<const std::byte*>(hash.data());
  out.insert(out.end(), p, p + kHashChars);
  const auto* b = reinterpret_cast<const std::byte*>(t.buffers.data());
  out.insert(out.end(), b, b + t.buffers.size() * sizeof(float));
  if (!t.joiners.empty()) {
    Put(out, static_cast<uint32_t>(t.joiners.size()));
    for (int r : t.joiners) Put(out, static_cast<uint32_t>(r));
  }
  return out;
}

namespace {

// The optional joiner list after the fixed part (`tail`); DataLoss if it is malformed.
Result<std::vector<int>> DecodeJoiners(std::span<const std::byte> tail) {
  std::vector<int> joiners;
  if (tail.empty()) return joiners;
  size_t pos = 0;
  if (tail.size() < sizeof(uint32_t)) return DataLoss("epoch totals: truncated joiner list");
  const auto n = Get<uint32_t>(tail, pos);
  // Checked before allocating: the count must be exactly what the bytes hold.
  if (n == 0 || n > kMaxJoinerRank || tail.size() != sizeof(uint32_t) * (1 + size_t{n})) {
    return DataLoss("epoch totals: a joiner list of {} bytes does not hold the {} ranks it states",
                    tail.size(), n);
  }
  for (uint32_t i = 0; i < n; ++i) {
    const auto r = Get<uint32_t>(tail, pos);
    if (r >= kMaxJoinerRank || (!joiners.empty() && static_cast<int>(r) <= joiners.back())) {
      return DataLoss("epoch totals: joiner ranks must be ascending and below {}", kMaxJoinerRank);
    }
    joiners.push_back(static_cast<int>(r));
  }
  return joiners;
}

}  // namespace

Result<EpochTotals> DecodeEpochTotals(std::span<const std::byte> body, size_t num_buffers) {
  // The length is checked against the count this peer's own model has before anything is
  // allocated: a peer cannot make us hold more than our own model's buffers.
  const size_t expected = kBodyBytes + num_buffers * sizeof(float);
  if (body.size() < expected) {
    return DataLoss(
        "epoch totals: {} bytes, expected {} ({} BatchNorm buffer values); peers must "
        "train the same model",
        body.size(), expected, num_buffers);
  }
  EpochTotals t;
  size_t pos = 0;
  t.train_loss_sum = Get<double>(body, pos);
  t.train_samples = Get<uint64_t>(body, pos);
  t.val_loss_sum = Get<double>(body, pos);
  t.val_samples = Get<uint64_t>(body, pos);
  t.test_correct = Get<uint64_t>(body, pos);
  t.test_samples = Get<uint64_t>(body, pos);
  t.param_hash.assign(reinterpret_cast<const char*>(body.data() + pos), kHashChars);
  pos += kHashChars;
  t.buffers.resize(num_buffers);
  if (num_buffers > 0)
    std::memcpy(t.buffers.data(), body.data() + pos, num_buffers * sizeof(float));
  for (float v : t.buffers) {
    if (!std::isfinite(v)) return DataLoss("epoch totals: non-finite BatchNorm buffer value");
  }
  P2P_ASSIGN_OR_RETURN(t.joiners, DecodeJoiners(body.subspan(expected)));
  if (!IsHexHash(t.param_hash))
    return DataLoss("epoch totals: parameter hash is not 16 hex digits");
  if (!std::isfinite(t.train_loss_sum) || !std::isfinite(t.val_loss_sum)) {
    return DataLoss("epoch totals: non-finite loss sum");
  }
  if (t.test_correct > t.test_samples) {
    return DataLoss("epoch totals: {} correct of {} test samples", t.test_correct, t.test_samples);
  }
  return t;
}

Result<EpochTotals> ExchangeEpochTotals(Mailbox& mailbox, uint64_t epoch, const EpochTotals& mine,
                                        broker::Deadline deadline) {
  broker::Envelope env;
  env.type = broker::MessageType::kEpochEnd;
  env.epoch = epoch;
  env.body = EncodeEpochTotals(mine);
  P2P_RETURN_IF_ERROR(mailbox.Send(std::move(env)));
  // The members of the current view, in rank order (sync/membership/).
  const std::vector<int>& members = mailbox.view().members;
  std::vector<int> others;
  for (int r : members) {
    if (r != mailbox.rank()) others.push_back(r);
  }
  P2P_ASSIGN_OR_RETURN(
      auto got, mailbox.Collect(broker::MessageType::kEpochEnd, {epoch, 0, mailbox.view().id},
                                others, deadline, fmt::format("end-of-epoch {} totals", epoch)));
  EpochTotals sum;
  sum.param_hash = mine.param_hash;
  std::vector<EpochTotals> decoded_all(members.size());
  std::vector<const EpochTotals*> in_rank_order;
  std::set<int> joiners;
  for (size_t i = 0; i < members.size(); ++i) {
    const int r = members[i];
    if (r == mailbox.rank()) {
      in_rank_order.push_back(&mine);
    } else {
      auto decoded = DecodeEpochTotals(got.at(r).body, mine.buffers.size());
      if (!decoded.ok()) return decoded.status().Annotate(fmt::format("from rank {}", r));
      decoded_all[i] = std::move(*decoded);
      in_rank_order.push_back(&decoded_all[i]);
    }
    const EpochTotals& t = *in_rank_order.back();
    if (t.param_hash != mine.param_hash) {
      return Status(StatusCode::kInternal,
                    fmt::format("parameters diverged after epoch {}: rank {} has {} but this peer "
                                "(rank {}) has {}; peers must run the same build and flags",
                                epoch, r, t.param_hash, mailbox.rank(), mine.param_hash));
    }
    sum.train_loss_sum += t.train_loss_sum;
    sum.train_samples += t.train_samples;
    sum.val_loss_sum += t.val_loss_sum;
    sum.val_samples += t.val_samples;
    sum.test_correct += t.test_correct;
    sum.test_samples += t.test_samples;
    for (int j : t.joiners) {
      if (j < mailbox.size() && !mailbox.view().Contains(j)) joiners.insert(j);
    }
  }
  sum.joiners.assign(joiners.begin(), joiners.end());
  sum.buffers = WeightedMeanBuffers(in_rank_order);
  return sum;
}

}  // namespace p2p::sync
