// Internal helpers of the ZeroMQ mesh and the rendezvous, and the mesh's control frames (not part
// of broker's public API: it includes zmq.hpp). cppzmq throws zmq::error_t; these helpers and their
// callers turn every such error into a Status at the function that called into cppzmq.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "broker/envelope.h"
#include "broker/transport.h"

namespace p2p::broker::zmq_util {

// Socket options every p2ptrain socket gets. Times in milliseconds.
struct SocketOptions {
  int linger_ms = 1000;            // bound on flushing queued messages at close
  int64_t max_message_bytes = -1;  // ZMQ_MAXMSGSIZE for inbound messages; -1 = unlimited
  int heartbeat_ivl_ms = 1000;     // ZMTP PING interval; 0 disables heartbeats
  int heartbeat_timeout_ms = 5000;
  int hwm = 1000;            // ZMQ_SNDHWM and ZMQ_RCVHWM, in messages
  int send_timeout_ms = -1;  // ZMQ_SNDTIMEO; -1 blocks
};

// Applies `options` (throws zmq::error_t on an invalid value; call inside a try).
void Configure(zmq::socket_t& socket, const SocketOptions& options);

// Time left until `deadline`, rounded up to whole milliseconds, never negative.
std::chrono::milliseconds PollTimeout(Deadline deadline);

// zmq_poll until something is ready or the deadline passes (returns 0). EINTR is retried;
// other failures are an IoError.
Result<int> Poll(std::span<zmq_pollitem_t> items, Deadline deadline);

Status ErrorStatus(const zmq::error_t& e, std::string_view context);

inline std::span<const std::byte> AsBytes(const zmq::message_t& m) {
  return {static_cast<const std::byte*>(m.data()), m.size()};
}

// Copies `parts` (concatenated) into one zmq message.
zmq::message_t ToMessage(std::span<const std::byte> head, std::span<const std::byte> tail = {});

// ---------------------------------------------------------------- mesh control frames
// HELLO / HELLO_ACK of ZmqTransport::Connect (docs/wire-format.md): magic "P2PZ", version u8,
// kind u8, 2 reserved zero bytes, rank u32 LE, size u32 LE, run id length u8, run id bytes.
inline constexpr std::array<std::byte, 4> kControlMagic = {std::byte{'P'}, std::byte{'2'},
                                                           std::byte{'P'}, std::byte{'Z'}};
inline constexpr uint8_t kControlVersion = 1;
inline constexpr size_t kControlHeaderBytes = 17;
inline constexpr size_t kMaxControlBytes = kControlHeaderBytes + kMaxRunIdBytes;

enum class ControlKind : uint8_t { kHello = 1, kHelloAck = 2 };

struct Control {
  ControlKind kind = ControlKind::kHello;
  uint32_t rank = 0;
  uint32_t size = 0;
  std::string run_id;  // <= kMaxRunIdBytes
};

bool IsControlFrame(std::span<const std::byte> frame);
Bytes EncodeControl(const Control& c);
// DataLoss / InvalidArgument for a short, oversized or unknown frame. Does not check the values.
Result<Control> DecodeControl(std::span<const std::byte> frame);

// A mesh DEALER's routing id: "r<rank>-<16 hex digits of nonce>". The nonce is drawn at random
// per transport, so nobody who has not seen this connection's traffic can take its routing id
// first (libzmq ignores a second connection with a routing id in use: a squatter on plain
// "r<rank>" would lock the real rank out).
std::string RoutingId(int rank, uint64_t nonce);
inline constexpr size_t kMaxRoutingIdBytes = 32;
// The rank a routing id claims: "r<decimal>" (no leading zeros, below `size`), optionally followed
// by '-' and any suffix, at most kMaxRoutingIdBytes in all; -1 for anything else. A claim, not a
// proof: several connections may claim one rank.
int ParseRoutingId(std::span<const std::byte> id, int size);

}  // namespace p2p::broker::zmq_util
