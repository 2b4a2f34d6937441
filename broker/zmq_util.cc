#include "broker/zmq_util.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace p2p::broker::zmq_util {

void Configure(zmq::socket_t& socket, const SocketOptions& o) {
  socket.set(zmq::sockopt::linger, o.linger_ms);
  socket.set(zmq::sockopt::maxmsgsize, o.max_message_bytes);
  socket.set(zmq::sockopt::sndhwm, o.hwm);
  socket.set(zmq::sockopt::rcvhwm, o.hwm);
  socket.set(zmq::sockopt::sndtimeo, o.send_timeout_ms);
  if (o.heartbeat_ivl_ms > 0) {
    socket.set(zmq::sockopt::heartbeat_ivl, o.heartbeat_ivl_ms);
    socket.set(zmq::sockopt::heartbeat_timeout, o.heartbeat_timeout_ms);
    socket.set(zmq::sockopt::heartbeat_ttl, o.heartbeat_timeout_ms);  // tells the remote side
  }
}

std::chrono::milliseconds PollTimeout(Deadline deadline) {
  const auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return std::chrono::milliseconds(0);
  return std::chrono::ceil<std::chrono::milliseconds>(left);
}

Result<int> Poll(std::span<zmq_pollitem_t> items, Deadline deadline) {
  while (true) {
    try {
      return zmq::poll(items.data(), items.size(), PollTimeout(deadline));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) return ErrorStatus(e, "zmq_poll");
    }
  }
}

Status ErrorStatus(const zmq::error_t& e, std::string_view context) {
  if (e.num() == EHOSTUNREACH) return Unavailable("{}: peer unreachable ({})", context, e.what());
  if (e.num() == ETERM) return Unavailable("{}: ZeroMQ context terminated", context);
  return IoError("{}: {}", context, e.what());
}

namespace {

void PutU32(std::byte* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<std::byte>(v >> (8 * i));
}

uint32_t GetU32(const std::byte* in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(in[i]) << (8 * i);
  return v;
}

}  // namespace

zmq::message_t ToMessage(std::span<const std::byte> head, std::span<const std::byte> tail) {
  zmq::message_t m(head.size() + tail.size());
  auto* out = static_cast<std::byte*>(m.data());
  if (!head.empty()) std::memcpy(out, head.data(), head.size());
  if (!tail.empty()) std::memcpy(out + head.size(), tail.data(), tail.size());
  return m;
}

bool IsControlFrame(std::span<const std::byte> f) {
  return f.size() >= 4 && std::equal(kControlMagic.begin(), kControlMagic.end(), f.begin());
}

Bytes EncodeControl(const Control& c) {
  Bytes out(kControlHeaderBytes + c.run_id.size());
  std::copy(kControlMagic.begin(), kControlMagic.end(), out.begin());
  out[4] = std::byte{kControlVersion};
  out[5] = static_cast<std::byte>(c.kind);
  PutU32(&out[8], c.rank);
  PutU32(&out[12], c.size);
  out[16] = static_cast<std::byte>(c.run_id.size());
  std::memcpy(out.data() + kControlHeaderBytes, c.run_id.data(), c.run_id.size());
  return out;
}

Result<Control> DecodeControl(std::span<const std::byte> f) {
  if (f.size() < kControlHeaderBytes || !IsControlFrame(f)) return DataLoss("control: short frame");
  if (f[4] != std::byte{kControlVersion}) return InvalidArgument("control: unknown version");
  if (f[6] != std::byte{0} || f[7] != std::byte{0}) return DataLoss("control: reserved bytes set");
  const auto kind = static_cast<uint8_t>(f[5]);
  if (kind != 1 && kind != 2) return InvalidArgument("control: unknown kind {}", kind);
  const size_t run_len = static_cast<size_t>(f[16]);
  if (run_len > kMaxRunIdBytes || f.size() != kControlHeaderBytes + run_len) {
    return DataLoss("control: run id length {} does not match the frame", run_len);
  }
  Control c{static_cast<ControlKind>(kind), GetU32(&f[8]), GetU32(&f[12]), {}};
  c.run_id.assign(reinterpret_cast<const char*>(f.data()) + kControlHeaderBytes, run_len);
  return c;
}

std::string RoutingId(int rank, uint64_t nonce) { return fmt::format("r{}-{:016x}", rank, nonce); }

int ParseRoutingId(std::span<const std::byte> id, int size) {
  if (id.size() < 2 || id.size() > kMaxRoutingIdBytes || id[0] != std::byte{'r'}) return -1;
  size_t end = 1;
  while (end < id.size() && id[end] != std::byte{'-'}) ++end;
  if (end == 1 || end > 6 || end + 1 == id.size()) return -1;  // no digits, too many, empty suffix
  if (id[1] == std::byte{'0'} && end > 2) return -1;
  int rank = 0;
  for (size_t i = 1; i < end; ++i) {
    const char c = static_cast<char>(id[i]);
    if (c < '0' || c > '9') return -1;
    rank = rank * 10 + (c - '0');
  }
  return rank < size ? rank : -1;
}

}  // namespace p2p::broker::zmq_util
