#include "sync/epoch_summary.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

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
  return out;
}

Result<EpochTotals> DecodeEpochTotals(std::span<const std::byte> body) {
  if (body.size() != kBodyBytes) {
    return DataLoss("epoch totals: {} bytes, expected {}", body.size(), kBodyBytes);
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
  P2P_ASSIGN_OR_RETURN(auto got, mailbox.Collect(broker::MessageType::kEpochEnd,
                                                 {epoch, 0, mailbox.view().id}, others, deadline,
                                                 fmt::format("end-of-epoch {} totals", epoch)));
  EpochTotals sum;
  sum.param_hash = mine.param_hash;
  for (int r : members) {
    EpochTotals t = mine;
    if (r != mailbox.rank()) {
      auto decoded = DecodeEpochTotals(got.at(r).body);
      if (!decoded.ok()) return decoded.status().Annotate(fmt::format("from rank {}", r));
      t = *decoded;
    }
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
  }
  return sum;
}

}  // namespace p2p::sync
