// What the amqp backend sends besides tasks and results (task.h): a worker that has not seen a
// pool's parameter version yet asks that pool for it once and caches it.
//
//   ParamsRequest "P2PPREQ1" {"version", "num_params", "reply_to", "worker"}   worker -> pool
//   ParamsReply   "P2PPARM1" {"version", "error"} u64 n | n f32                 pool -> worker
//
// Every body is untrusted: decoders take the whole AMQP body, bound every length before
// allocating and reject trailing bytes.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "serverless_offload/task.h"

namespace p2p::offload {

// The work queue every pool publishes to and every `function --serve` worker consumes from,
// unless --fn-queue names another. Pools and workers must declare it with the same arguments,
// hence one expiry for both: removed after a day with no consumer and no declare.
constexpr const char* kDefaultWorkQueue = "p2ptrain.functions";
constexpr std::chrono::milliseconds kWorkQueueExpiry = std::chrono::hours(24);
// Private reply queues (a pool's results, a worker's parameters) outlive a crashed owner by this.
constexpr std::chrono::milliseconds kReplyQueueExpiry = std::chrono::minutes(5);
// Parameters travel in one AMQP message: RabbitMQ 4's default max message size is 16 MiB.
constexpr uint64_t kMaxRemoteParamBytes = 16 << 20;

// AMQP bodies are bytes; our messages are built and parsed as text.
inline std::span<const std::byte> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
inline std::string_view AsText(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// A queue name of our own making, unique per process: "<prefix>.<host>.<pid>.<random>".
std::string PrivateQueueName(std::string_view prefix);
// InvalidArgument unless `name` is a usable AMQP queue name (1..255 bytes, printable ASCII).
Status ValidateQueueName(std::string_view name, std::string_view flag);

struct ParamsRequest {
  uint64_t version = 0;
  uint64_t num_params = 0;
  std::string reply_to;  // the worker's private queue
  std::string worker;
};

struct ParamsReply {
  uint64_t version = 0;
  std::string error;  // e.g. the version is no longer held by the pool
  std::vector<float> params;
};

enum class MessageKind { kTask, kResult, kParamsRequest, kParamsReply, kUnknown };
MessageKind KindOf(std::string_view body);

std::string EncodeParamsRequest(const ParamsRequest& request);
std::string EncodeParamsReply(uint64_t version, std::string_view error,
                              std::span<const float> params);

// Whole-message decoders (one AMQP body each); DataLoss if malformed, truncated or followed by
// trailing bytes. DecodeParamsReply also rejects a parameter count other than `expected_count`.
Result<Task> DecodeTask(std::string_view body);
Result<TaskResult> DecodeResult(std::string_view body);
Result<ParamsRequest> DecodeParamsRequest(std::string_view body);
Result<ParamsReply> DecodeParamsReply(std::string_view body, uint64_t expected_count);

}  // namespace p2p::offload
