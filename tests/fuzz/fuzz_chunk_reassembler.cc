// Fuzz target: the ZeroMQ transport's chunk Reassembler (broker/chunking.h, "P2PC" frames), fed a
// sequence of frames from up to 8 senders (fuzz_support.h's records), with the limits the ZeroMQ
// transport uses by default.
//
// Checks, after every frame: an error is counted in rejected() exactly once, an accepted frame at
// most once (an eviction); the bytes held for
// incomplete messages never exceed max_pending_bytes; a completed message is no larger than
// max_message_bytes and as long as its frames declared. A record whose sender byte is 0xff stands
// for the transport's reassembly timeout: DropStale evicts what has been idle for 60 s.
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "broker/chunking.h"
#include "broker/zmq_transport.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using p2p::fuzz::Expect;
namespace b = p2p::broker;

constexpr uint8_t kDropStale = 0xff;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const b::ZmqTransportOptions defaults;
  const b::ReassemblerOptions options{defaults.max_message_bytes, defaults.max_pending_bytes, 4};
  b::Reassembler reassembler(options);
  auto now = b::Reassembler::TimePoint{} + std::chrono::hours(1);
  for (const p2p::fuzz::Record& r : p2p::fuzz::SplitRecords(data, size)) {
    now += std::chrono::seconds(1);
    if (r.sender == kDropStale) {
      reassembler.DropStale(now - defaults.reassembly_timeout);
      continue;
    }
    const uint64_t rejected_before = reassembler.rejected();
    auto result = reassembler.Accept(r.sender % 8, r.bytes, now);
    if (!result.ok()) {
      Expect(reassembler.rejected() == rejected_before + 1, "an error not counted in rejected()");
    } else {
      // The first frame of a new message may evict the sender's oldest incomplete one, which
      // counts as one rejection (chunking.h); nothing else may.
      Expect(reassembler.rejected() - rejected_before <= 1,
             "an accepted frame counted as more than one rejection");
    }
    if (result.ok() && result->has_value()) {
      const auto header = b::DecodeChunkHeader(r.bytes);
      Expect(header.ok(), "a message completed by a frame whose header does not decode");
      Expect((*result)->size() == header->total_bytes, "a message of another length than declared");
      Expect((*result)->size() <= options.max_message_bytes, "a message over max_message_bytes");
    }
    Expect(reassembler.pending_bytes() <= options.max_pending_bytes,
           "pending bytes over max_pending_bytes");
  }
  return 0;
}
