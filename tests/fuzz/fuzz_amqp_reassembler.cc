// Fuzz target: the AMQP transport's chunk decoding and reassembly (broker/chunking.h, "P2PA"
// frames), driven the way its I/O thread drives them (broker/amqp_io.cc, IoThread::OnBody) for
// rank 0 of a 4-rank run: DecodeChunk with the transport's default max_message_bytes, frames from
// our own or an unknown rank dropped, hello frames ignored (they touch no reassembly state), data
// frames to Reassembler::Add. Input: a sequence of AMQP bodies (fuzz_support.h's records; the
// sender byte is unused, the rank is in the frame).
//
// Checks: a completed message is as long as its frames declared and comes from the rank they
// named, and the bytes held for incomplete messages never exceed the total budget.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "broker/amqp_transport.h"
#include "broker/chunking.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

namespace b = p2p::broker;
using p2p::fuzz::Expect;

constexpr uint32_t kRank = 0;
constexpr uint32_t kSize = 4;

// The transport's default; P2P_FUZZ_AMQP_MAX_TOTAL overrides it (docs/fuzzing.md).
uint64_t MaxTotal() {
  static const uint64_t max_total = [] {
    const char* env = std::getenv("P2P_FUZZ_AMQP_MAX_TOTAL");
    return env != nullptr ? std::strtoull(env, nullptr, 10)
                          : p2p::broker::AmqpOptions{}.max_message_bytes;
  }();
  return max_total;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const b::ReassemblyLimits limits{.max_message_bytes = MaxTotal()};
  b::Reassembler reassembler(limits);
  for (const p2p::fuzz::Record& r : p2p::fuzz::SplitRecords(data, size)) {
    auto chunk = b::DecodeChunk(r.bytes, MaxTotal());
    if (!chunk.ok()) continue;
    const b::ChunkHeader& h = chunk->header;
    if (h.from_rank >= kSize || h.from_rank == kRank) continue;
    if (h.kind != b::FrameKind::kData) continue;
    auto message = reassembler.Add(*chunk);
    Expect(reassembler.pending_bytes() <= limits.max_pending_bytes,
           "incomplete messages hold more than the budget");
    if (!message.ok() || !message->has_value()) continue;
    Expect((*message)->from_rank == static_cast<int>(h.from_rank), "a message from another rank");
    Expect((*message)->payload.size() == h.total, "a message of another length than declared");
  }
  return 0;
}
