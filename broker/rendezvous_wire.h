// The rendezvous protocol's messages (docs/wire-format.md section 4): one single-part msgpack map
// each way, decoded from untrusted bytes under hard limits. Used by the service and the client in
// broker/rendezvous.cc; declared here so tests can play a hostile client with well-formed bytes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "broker/transport.h"

namespace p2p::broker::rendezvous {

inline constexpr uint64_t kVersion = 1;
inline constexpr size_t kMaxRequestBytes = 4096;  // ZMQ_MAXMSGSIZE of the service's socket
inline constexpr size_t kMaxReplyBytes = size_t{16} << 20;
inline constexpr size_t kMaxErrorBytes = 1024;
inline constexpr size_t kKeyIdBytes = 32;           // a SHA-256 key fingerprint
inline constexpr size_t kMaxSignatureBytes = 1024;  // RSA-8192

struct Request {
  std::string run_id;
  int rank = 0;
  int size = 0;
  std::string endpoint;
  // Optional signature (all three or none): the signer's key fingerprint, the signing time in
  // Unix milliseconds and the signature over SigningBytes().
  Bytes key_id;
  uint64_t unix_ms = 0;
  Bytes signature;
  bool is_signed() const { return !signature.empty(); }
};

struct Reply {
  bool ok = false;
  std::string error;
  std::vector<std::string> endpoints;
};

Bytes EncodeRequest(const Request& r);
// InvalidArgument / DataLoss naming what is wrong; nothing is allocated beyond the limits.
Result<Request> DecodeRequest(std::span<const std::byte> data, int max_size);

Bytes EncodeReply(const Reply& r);
Result<Reply> DecodeReply(std::span<const std::byte> data, int size);

// What a registration's signature covers: "p2ptrain-rendezvous-v1", then run, size, rank,
// endpoint, key id and time, each length-prefixed (u32 LE) or fixed-width LE. Binding the time
// lets the service refuse a recorded registration replayed later (docs/security.md).
Bytes SigningBytes(const Request& r);

}  // namespace p2p::broker::rendezvous
