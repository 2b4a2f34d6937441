// Fuzz target: DecodeEnvelope (broker/envelope.h), which every transport applies to every
// message from the network before anything else looks at it.
//
// Besides the sanitizers, checks what the header promises of a decoded envelope: it passes
// ValidateEnvelope, re-encodes, decodes back to the same value, and VisitSigningBytes' pieces
// concatenate to SigningBytes (what signatures and MACs cover).
#include <cstddef>
#include <cstdint>
#include <span>

#include "broker/envelope.h"
#include "tests/fuzz/fuzz_support.h"

using p2p::fuzz::Expect;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace b = p2p::broker;
  const auto bytes = std::as_bytes(std::span(data, size));
  p2p::Result<b::Envelope> env = b::DecodeEnvelope(bytes);
  if (!env.ok()) {
    Expect(!env.status().message().empty(), "a rejection without a message");
    return 0;
  }
  Expect(b::ValidateEnvelope(*env).ok(), "a decoded envelope fails ValidateEnvelope");
  p2p::Result<b::Bytes> encoded = b::EncodeEnvelope(*env);
  Expect(encoded.ok(), "a decoded envelope does not encode");
  p2p::Result<b::Envelope> again = b::DecodeEnvelope(*encoded);
  Expect(again.ok() && *again == *env, "decode(encode(decoded)) differs from decoded");

  b::Bytes pieces;
  b::VisitSigningBytes(*env, [&](std::span<const std::byte> piece) {
    pieces.insert(pieces.end(), piece.begin(), piece.end());
  });
  Expect(pieces == b::SigningBytes(*env), "VisitSigningBytes pieces differ from SigningBytes");
  return 0;
}
