// Move-only RAII owners for the rabbitmq-c handles that must be freed by hand (STYLE habit 6),
// and the one place that includes rabbitmq-c's headers (0.11 installs them at the top level,
// 0.12+ under rabbitmq-c/).
//
// Thread-safety: none; a connection and everything read from it belong to one thread at a time
// (rabbitmq-c is not thread-safe, README "Threading").
#pragma once

#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/ssl_socket.h>
#include <rabbitmq-c/tcp_socket.h>
#else
#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#endif

#include <cstddef>
#include <span>
#include <string_view>
#include <utility>

namespace p2p::broker::amqp {

// Owns an amqp_connection_state_t and the socket attached to it. Destruction closes the socket
// without the AMQP close handshake (Session::Close does the polite version first).
class Connection {
 public:
  Connection() = default;
  static Connection New() { return Connection(amqp_new_connection()); }  // empty on OOM
  ~Connection() { reset(); }
  Connection(Connection&& o) noexcept : state_(std::exchange(o.state_, nullptr)) {}
  Connection& operator=(Connection&& o) noexcept {
    if (this != &o) {
      reset();
      state_ = std::exchange(o.state_, nullptr);
    }
    return *this;
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  amqp_connection_state_t get() const { return state_; }
  explicit operator bool() const { return state_ != nullptr; }
  void reset() {
    if (state_ != nullptr) amqp_destroy_connection(std::exchange(state_, nullptr));
  }

 private:
  explicit Connection(amqp_connection_state_t s) : state_(s) {}
  amqp_connection_state_t state_ = nullptr;
};

// Owns an amqp_envelope_t filled by amqp_consume_message. rabbitmq-c frees a half-filled
// envelope itself when the call fails, so the owner frees only after MarkFilled().
class Envelope {
 public:
  Envelope() = default;
  ~Envelope() { reset(); }
  Envelope(Envelope&& o) noexcept : env_(o.env_), filled_(std::exchange(o.filled_, false)) {}
  Envelope& operator=(Envelope&& o) noexcept {
    if (this != &o) {
      reset();
      env_ = o.env_;
      filled_ = std::exchange(o.filled_, false);
    }
    return *this;
  }
  Envelope(const Envelope&) = delete;
  Envelope& operator=(const Envelope&) = delete;

  amqp_envelope_t* out() { return &env_; }  // for the C call; then MarkFilled() on success
  void MarkFilled() { filled_ = true; }
  const amqp_envelope_t& get() const { return env_; }
  uint64_t delivery_tag() const { return env_.delivery_tag; }
  std::span<const std::byte> body() const {
    return {static_cast<const std::byte*>(env_.message.body.bytes), env_.message.body.len};
  }
  void reset() {
    if (std::exchange(filled_, false)) amqp_destroy_envelope(&env_);
  }

 private:
  amqp_envelope_t env_{};
  bool filled_ = false;
};

// Owns heap bytes from amqp_bytes_malloc_dup (e.g. a server-generated consumer tag, which
// otherwise lives in a decoding pool that amqp_maybe_release_buffers recycles).
class OwnedBytes {
 public:
  OwnedBytes() = default;
  static OwnedBytes Dup(amqp_bytes_t src) { return OwnedBytes(amqp_bytes_malloc_dup(src)); }
  ~OwnedBytes() { reset(); }
  OwnedBytes(OwnedBytes&& o) noexcept : b_(std::exchange(o.b_, amqp_empty_bytes)) {}
  OwnedBytes& operator=(OwnedBytes&& o) noexcept {
    if (this != &o) {
      reset();
      b_ = std::exchange(o.b_, amqp_empty_bytes);
    }
    return *this;
  }
  OwnedBytes(const OwnedBytes&) = delete;
  OwnedBytes& operator=(const OwnedBytes&) = delete;

  amqp_bytes_t get() const { return b_; }
  std::string_view view() const { return {static_cast<const char*>(b_.bytes), b_.len}; }
  void reset() {
    if (b_.bytes != nullptr) amqp_bytes_free(std::exchange(b_, amqp_empty_bytes));
  }

 private:
  explicit OwnedBytes(amqp_bytes_t b) : b_(b) {}
  amqp_bytes_t b_ = amqp_empty_bytes;
};

// Non-owning views for passing our buffers to rabbitmq-c (which never writes through them).
inline amqp_bytes_t BytesOf(std::string_view s) { return {s.size(), const_cast<char*>(s.data())}; }
inline amqp_bytes_t BytesOf(std::span<const std::byte> s) {
  return {s.size(), const_cast<std::byte*>(s.data())};
}

}  // namespace p2p::broker::amqp
