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

// Broadcasts `value` as `type` for `round`, collects everyone's and compares.
Status Agree(Mailbox& mailbox, broker::MessageType type, Round round, const std::string& value,
             broker::Deadline deadline, const std::string& what) {
  broker::Envelope env;
  env.type = type;
  env.epoch = round.epoch;
  env.step = round.step;
  env.body = ToBytes(value);
  P2P_RETURN_IF_ERROR(mailbox.Send(std::move(env)));
  std::vector<int> others;
  for (int r = 0; r < mailbox.size(); ++r) {
    if (r != mailbox.rank()) others.push_back(r);
  }
  P2P_ASSIGN_OR_RETURN(auto got, mailbox.Collect(type, round, others, deadline, what));
  for (const auto& [rank, e] : got) {
    if (ToString(e.body) != value) {
      return InvalidArgument("{}: rank {} has '{}' but this peer (rank {}) has '{}'", what, rank,
                             ToString(e.body), mailbox.rank(), value);
    }
  }
  return Status::Ok();
}

}  // namespace

Status AgreeOnStart(Mailbox& mailbox, const std::string& config_fingerprint,
                    const std::string& params_hash, broker::Deadline deadline) {
  const std::string value = fmt::format("{} params={}", config_fingerprint, params_hash);
  return Agree(mailbox, broker::MessageType::kParamsHash, {0, 0}, value, deadline,
               "start agreement (every peer must run the same configuration from the same "
               "initial parameters)");
}

Status AgreeOnEnd(Mailbox& mailbox, uint64_t epochs_done, const std::string& params_hash,
                  broker::Deadline deadline) {
  Status s = Agree(mailbox, broker::MessageType::kBarrier, {epochs_done, 0}, params_hash, deadline,
                   "end agreement on the final parameters");
  if (s.code() == StatusCode::kInvalidArgument) return {StatusCode::kInternal, s.message()};
  return s;
}

}  // namespace p2p::sync
