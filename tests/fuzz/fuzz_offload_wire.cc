// Fuzz target: the offload frames (serverless_offload/task.h, remote_wire.h). A function process
// reads tasks from its pipe and the pool reads results from the function's pipe (TakeTask,
// TakeResult: streams of frames); remote workers and pools read whole AMQP bodies (DecodeTask,
// DecodeResult, DecodeParamsRequest, DecodeParamsReply). The input goes to all of them; each
// decoder rejects another kind's magic at once, so a seed of one kind exercises its own decoder.
//
// Checks: the stream decoders consume every frame they return and make progress; a decoded task
// (with its samples in the message) or result encodes again and decodes back with the same id (and,
// for a result, the same gradient).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "serverless_offload/remote_wire.h"
#include "serverless_offload/task.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

namespace offload = p2p::offload;
using p2p::fuzz::Expect;

// The parameter count DecodeParamsReply is told to expect (the seeds' replies carry 16).
constexpr uint64_t kExpectedParams = 16;

void CheckTaskRoundTrip(const offload::Task& task) {
  // A task with its samples in a shared file does not carry them: EncodeTask is the sender's
  // encoder (rows and cols from task.x) and has nothing to encode them from.
  if (!task.shared.path.empty()) return;
  auto again = offload::DecodeTask(offload::EncodeTask(task));
  Expect(again.ok(), "a decoded task does not decode after EncodeTask");
  Expect(again->id == task.id && again->num_params == task.num_params,
         "a task changes across EncodeTask/DecodeTask");
}

void CheckResultRoundTrip(const offload::TaskResult& result) {
  auto again = offload::DecodeResult(offload::EncodeResult(result));
  Expect(again.ok(), "a decoded result does not decode after EncodeResult");
  const auto a = result.values(), b = again->values();
  // Bits, not values (NaN != NaN); memcmp only when there are any (data() may be null).
  Expect(again->id == result.id && a.size() == b.size() &&
             (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0),
         "a result changes across EncodeResult/DecodeResult");
}

// Takes frames from the front of `buffer` until it needs more bytes or finds a bad one.
template <typename Take, typename Check>
void DrainStream(std::string buffer, Take take, Check check) {
  while (true) {
    const size_t before = buffer.size();
    auto frame = take(buffer);
    if (!frame.ok() || !frame->has_value()) return;
    Expect(buffer.size() < before, "a stream decoder returned a frame without consuming it");
    check(**frame);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  if (auto task = offload::DecodeTask(body); task.ok()) CheckTaskRoundTrip(*task);
  if (auto result = offload::DecodeResult(body); result.ok()) CheckResultRoundTrip(*result);
  (void)offload::DecodeParamsRequest(body);
  (void)offload::DecodeParamsReply(body, kExpectedParams);
  (void)offload::KindOf(body);
  DrainStream(std::string(body), offload::TakeTask, CheckTaskRoundTrip);
  DrainStream(std::string(body), offload::TakeResult, CheckResultRoundTrip);
  return 0;
}
