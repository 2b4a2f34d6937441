#include "serverless_offload/remote_wire.h"

#include <unistd.h>

#include <random>

#include "serverless_offload/wire_frame.h"

namespace p2p::offload {
namespace {

using wire::kResultMagic;
using wire::kTaskMagic;
constexpr const auto& kRequestMagic = wire::kParamsRequestMagic;
constexpr const auto& kReplyMagic = wire::kParamsReplyMagic;

// Runs a streaming decoder (TakeTask/TakeResult) over one whole message.
template <typename T, typename Take>
Result<T> Whole(std::string_view body, Take take, const char* what) {
  std::string buffer(body);
  P2P_ASSIGN_OR_RETURN(auto parsed, take(buffer));
  if (!parsed) return DataLoss("{}: message of {} bytes is truncated", what, body.size());
  if (!buffer.empty()) return DataLoss("{}: {} trailing bytes", what, buffer.size());
  return std::move(*parsed);
}

}  // namespace

std::string PrivateQueueName(std::string_view prefix) {
  char host[64] = {};
  ::gethostname(host, sizeof(host) - 1);
  std::string h;
  for (char c : std::string_view(host)) h += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
  std::random_device rd;
  return fmt::format("{}.{}.{}.{:08x}", prefix, h.empty() ? "host" : h, ::getpid(), rd());
}

Status ValidateQueueName(std::string_view name, std::string_view flag) {
  if (name.empty() || name.size() > 255) {
    return InvalidArgument("{} '{}': a queue name needs 1 to 255 bytes", flag, name);
  }
  for (char c : name) {
    if (c < 0x21 || c > 0x7e) {
      return InvalidArgument("{} '{}': use printable ASCII without spaces", flag, name);
    }
  }
  if (name.starts_with("amq.")) {
    return InvalidArgument("{} '{}': names starting with amq. are reserved", flag, name);
  }
  return Status::Ok();
}

MessageKind KindOf(std::string_view body) {
  if (wire::HasMagic(body, kTaskMagic)) return MessageKind::kTask;
  if (wire::HasMagic(body, kResultMagic)) return MessageKind::kResult;
  if (wire::HasMagic(body, kRequestMagic)) return MessageKind::kParamsRequest;
  if (wire::HasMagic(body, kReplyMagic)) return MessageKind::kParamsReply;
  return MessageKind::kUnknown;
}

std::string EncodeParamsRequest(const ParamsRequest& r) {
  return wire::Frame(kRequestMagic, {{"version", r.version},
                                     {"num_params", r.num_params},
                                     {"reply_to", r.reply_to},
                                     {"worker", r.worker}});
}

std::string EncodeParamsReply(uint64_t version, std::string_view error,
                              std::span<const float> params) {
  std::string out = wire::Frame(kReplyMagic, {{"version", version}, {"error", error}});
  wire::Put(out, static_cast<uint64_t>(params.size()));
  out.append(reinterpret_cast<const char*>(params.data()), params.size_bytes());
  return out;
}

Result<Task> DecodeTask(std::string_view body) { return Whole<Task>(body, TakeTask, "task"); }

Result<TaskResult> DecodeResult(std::string_view body) {
  return Whole<TaskResult>(body, TakeResult, "result");
}

Result<ParamsRequest> DecodeParamsRequest(std::string_view body) {
  constexpr const char* kWhat = "parameter request";
  P2P_ASSIGN_OR_RETURN(auto head, wire::TakeHeader(body, kRequestMagic, kWhat));
  if (!head) return DataLoss("{}: truncated", kWhat);
  const auto& [h, at] = *head;
  if (at != body.size()) return DataLoss("{}: {} trailing bytes", kWhat, body.size() - at);
  ParamsRequest r;
  P2P_ASSIGN_OR_RETURN(r.version, wire::Field<uint64_t>(h, "version", kWhat));
  P2P_ASSIGN_OR_RETURN(r.num_params, wire::Field<uint64_t>(h, "num_params", kWhat));
  P2P_ASSIGN_OR_RETURN(r.reply_to, wire::Field<std::string>(h, "reply_to", kWhat));
  P2P_ASSIGN_OR_RETURN(r.worker, wire::Field<std::string>(h, "worker", kWhat));
  if (Status s = ValidateQueueName(r.reply_to, "reply_to"); !s.ok()) {
    return DataLoss("{}: {}", kWhat, s.message());
  }
  if (r.worker.size() > 255) return DataLoss("{}: worker id is too long", kWhat);
  return r;
}

Result<ParamsReply> DecodeParamsReply(std::string_view body, uint64_t expected_count) {
  constexpr const char* kWhat = "parameter reply";
  P2P_ASSIGN_OR_RETURN(auto head, wire::TakeHeader(body, kReplyMagic, kWhat));
  if (!head || body.size() < head->second + 8) return DataLoss("{}: truncated", kWhat);
  const auto& [h, at] = *head;
  ParamsReply r;
  P2P_ASSIGN_OR_RETURN(r.version, wire::Field<uint64_t>(h, "version", kWhat));
  P2P_ASSIGN_OR_RETURN(r.error, wire::Field<std::string>(h, "error", kWhat));
  const uint64_t n = wire::Peek<uint64_t>(body, at);
  if (!r.error.empty()) {
    if (n != 0 || body.size() != at + 8) return DataLoss("{}: error with a body", kWhat);
    return r;
  }
  if (n != expected_count) {
    return DataLoss("{}: {} parameters, the task said {}", kWhat, n, expected_count);
  }
  if (n > wire::kMaxFloats || body.size() != at + 8 + n * sizeof(float)) {
    return DataLoss("{}: body of {} bytes does not hold {} parameters", kWhat, body.size(), n);
  }
  r.params.resize(n);
  std::memcpy(r.params.data(), body.data() + at + 8, n * sizeof(float));
  return r;
}

}  // namespace p2p::offload
