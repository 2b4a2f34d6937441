#include "sync/agreement.h"

#include <fmt/format.h>

namespace p2p::sync {
namespace {

broker::Bytes ToBytes(const std::string& s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return broker::Bytes(p, p + s.size());
}

std::string ToString(const broker::Bytes& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// Broadcasts `value` as `type` for `round`, collects everyone's and compares the part before
// kPerRank; what follows it may differ between ranks and is returned, indexed by rank.
constexpr char kPerRank = '|';

std::string Common(const std::string& v) { return v.substr(0, v.find(kPerRank)); }
std::string PerRank(const std::string& v) {
  const size_t at = v.find(kPerRank);
  return at == std::string::npos ? "" : v.substr(at + 1);
}

Result<std::vector<std::string>> Agree(Mailbox& mailbox, broker::MessageType type, Round round,
                                       const std::string& value, broker::Deadline deadline,
                                       const std::string& what) {
  broker::Envelope env;
  env.type = type;
  env.epoch = round.epoch;
  env.step = round.step;
  env.body = ToBytes(value);
  P2P_RETURN_IF_ERROR(mailbox.Send(std::move(env)));
  // The members of the current view (all ranks unless one was evicted, sync/membership/).
  std::vector<int> others;
  for (int r : mailbox.view().members) {
    if (r != mailbox.rank()) others.push_back(r);
  }
  round.view = mailbox.view().id;
  P2P_ASSIGN_OR_RETURN(auto got, mailbox.Collect(type, round, others, deadline, what));
  std::vector<std::string> per_rank(mailbox.size());
  per_rank[mailbox.rank()] = PerRank(value);
  for (const auto& [rank, e] : got) {
    const std::string theirs = ToString(e.body);
    if (Common(theirs) != Common(value)) {
      return InvalidArgument("{}: rank {} has '{}' but this peer (rank {}) has '{}'", what, rank,
                             Common(theirs), mailbox.rank(), Common(value));
    }
    per_rank[rank] = PerRank(theirs);
  }
  return per_rank;
}

}  // namespace

Result<std::vector<uint64_t>> AgreeOnStart(Mailbox& mailbox, const std::string& config_fingerprint,
                                           const std::string& params_hash, uint64_t local_steps,
                                           broker::Deadline deadline) {
  const std::string value =
      fmt::format("{} params={}{}{}", config_fingerprint, params_hash, kPerRank, local_steps);
  P2P_ASSIGN_OR_RETURN(auto per_rank,
                       Agree(mailbox, broker::MessageType::kParamsHash, {0, 0}, value, deadline,
                             "start agreement (every peer must run the same configuration from "
                             "the same initial parameters)"));
  std::vector<uint64_t> steps(per_rank.size());
  for (size_t r = 0; r < per_rank.size(); ++r) {
    const std::string& s = per_rank[r];
    if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) {
      return InvalidArgument("start agreement: rank {} sent a malformed step count '{}'", r, s);
    }
    steps[r] = std::stoull(s);
  }
  return steps;
}

Status AgreeOnEnd(Mailbox& mailbox, uint64_t epochs_done, const std::string& params_hash,
                  broker::Deadline deadline) {
  auto s = Agree(mailbox, broker::MessageType::kBarrier, {epochs_done, 0}, params_hash, deadline,
                 "end agreement on the final parameters");
  if (s.ok()) return Status::Ok();
  if (s.status().code() == StatusCode::kInvalidArgument) {
    return {StatusCode::kInternal, s.status().message()};
  }
  return s.status();
}

}  // namespace p2p::sync
