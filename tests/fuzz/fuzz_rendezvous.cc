// Fuzz target: the rendezvous service's request decoder (anyone who reaches `p2ptrain broker`'s
// port can send one) and the reply decoder a peer applies to what answers on the service's
// address (broker/rendezvous_wire.h). The input goes to both, as one message.
//
// Checks: every rejection says why.
#include <cstddef>
#include <cstdint>
#include <span>

#include "broker/rendezvous_wire.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

namespace wire = p2p::broker::rendezvous;
using p2p::fuzz::Expect;

constexpr int kMaxSize = 4096;  // RendezvousOptions::max_size's default
constexpr int kRunSize = 4;     // the seeds' replies are for 4 ranks

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto bytes = std::as_bytes(std::span(data, size));
  const p2p::Status request = wire::DecodeRequest(bytes, kMaxSize).status();
  Expect(request.ok() || !request.message().empty(), "a request rejected without a message");
  const p2p::Status reply = wire::DecodeReply(bytes, kRunSize).status();
  Expect(reply.ok() || !reply.message().empty(), "a reply rejected without a message");
  return 0;
}
