// Fuzz target: the chunk Reassembler (broker/chunking.h, "P2PA" frames) driven the way the ZeroMQ
// transport drives it (broker/zmq_transport.cc): frames from up to 8 connections, each its own
// reassembly sender key, with the transport's default limits. Input: fuzz_support.h's records;
// the sender byte picks the connection, 0xff stands for the reassembly timeout passing, and 0xfe
// for the transport closing connection 0 (Forget).
//
// Checks, after every frame: the bytes held for incomplete messages never exceed the total
// budget; a completed message comes from the connection that sent its last frame, is as long as
// its frames declared and is no larger than max_message_bytes; every drop reaches the observer
// (rejected() and the observed drops agree).
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "broker/chunking.h"
#include "broker/zmq_transport.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using p2p::fuzz::Expect;
namespace b = p2p::broker;

constexpr uint8_t kTimeout = 0xff;
constexpr uint8_t kForget = 0xfe;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const b::ZmqTransportOptions defaults;
  const b::ReassemblyLimits limits = b::ZmqReassemblyLimits(defaults);
  b::Reassembler reassembler(limits);
  uint64_t observed = 0;
  reassembler.set_drop_observer([&observed](b::DropReason, uint32_t) { ++observed; });
  auto now = b::Reassembler::TimePoint{} + std::chrono::hours(1);
  for (const p2p::fuzz::Record& r : p2p::fuzz::SplitRecords(data, size)) {
    now += std::chrono::seconds(1);
    if (r.sender == kTimeout) now += limits.timeout;
    if (r.sender == kForget) reassembler.Forget(0);
    if (r.sender == kTimeout || r.sender == kForget) continue;
    auto chunk = b::DecodeChunk(r.bytes, defaults.max_message_bytes);
    if (!chunk.ok()) continue;
    const uint32_t link = r.sender % 8;
    auto message = reassembler.Add(link, *chunk, now);
    Expect(reassembler.rejected() == observed, "a drop the observer did not see");
    Expect(reassembler.pending_bytes() <= limits.max_pending_bytes,
           "incomplete messages hold more than the budget");
    if (!message.ok() || !message->has_value()) continue;
    Expect((*message)->from_rank == static_cast<int>(link), "a message from another connection");
    Expect((*message)->payload.size() == chunk->header.total,
           "a message of another length than declared");
    Expect((*message)->payload.size() <= limits.max_message_bytes,
           "a message over max_message_bytes");
  }
  return 0;
}
