// Session: one rabbitmq-c connection with one channel, as synchronous operations that each end
// within a bound (socket open and login by a deadline, every RPC by the RPC timeout, every wait
// by its timeout). The transport's I/O thread owns one; tests use one to inspect the broker.
//
// Thread-safety: none. A Session is used by one thread at a time (rabbitmq-c connections are not
// thread-safe); moving it to another thread is fine.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "broker/amqp_handles.h"
#include "broker/amqp_url.h"
#include "broker/transport.h"
#include "common/status.h"

namespace p2p::broker::amqp {

struct SessionConfig {
  AmqpUrl url;           // TLS settings included
  int heartbeat_s = 10;  // proposed to the broker; the lower non-zero value wins
  std::chrono::milliseconds rpc_timeout{10'000};
};

// What the transport declares on every (re)connect. All idempotent.
struct Topology {
  std::string exchange;                   // direct, non-durable, auto-delete
  std::string queue;                      // non-durable, non-exclusive, x-expires
  std::vector<std::string> binding_keys;  // queue <- exchange
  uint16_t prefetch = 64;                 // basic.qos, per consumer
  std::chrono::milliseconds queue_expiry{std::chrono::minutes(10)};
  bool purge = false;  // empty the queue after declaring it (first connect only: stale messages)
};

struct Delivery {
  Envelope envelope;
};
struct Confirm {  // basic.ack / basic.nack for published messages (publisher confirms)
  uint64_t tag = 0;
  bool multiple = false;
  bool ack = true;
};
struct Other {};  // a frame needing no action (connection.blocked, a returned message, ...)
// What Poll found: nothing within the timeout (monostate), a delivery, a confirm, or Other.
using Event = std::variant<std::monostate, Delivery, Confirm, Other>;

class Session {
 public:
  // Opens the socket (TCP, or TLS verifying peer and hostname unless the URL says verify_none),
  // logs in and opens channel 1, all before `deadline`. Unavailable names host:port when the
  // broker cannot be reached; bad credentials give InvalidArgument with ACCESS_REFUSED.
  static Result<Session> Open(const SessionConfig& config, Deadline deadline);

  Session(Session&&) = default;
  Session& operator=(Session&&) = default;
  ~Session() = default;  // drops the socket; call Close() first for a polite goodbye

  Status DeclareExchange(std::string_view name);
  Status DeclareQueue(std::string_view name, std::chrono::milliseconds expiry);
  Status Purge(std::string_view name);
  Status Bind(std::string_view queue, std::string_view exchange, std::string_view key);
  Status SetPrefetch(uint16_t count);
  Status EnableConfirms();  // confirm.select: delivery tags of publishes count from 1
  // Manual acks. Exclusive (the default) refuses a second consumer of the queue; a shared work
  // queue (competing consumers) passes false. Several consumers may share the channel; the
  // delivery's consumer tag and routing key say which queue a message came from.
  Status Consume(std::string_view queue, bool exclusive = true);
  // Passive declares on a scratch channel, so a 404 does not close channel 1.
  Result<bool> QueueExists(std::string_view name);
  Result<bool> ExchangeExists(std::string_view name);

  // Publishes a transient message; returns once written to the socket (confirms come via Poll).
  // A non-zero `expiration` is the message's TTL: the broker drops it if it waits longer in a
  // queue (a task nobody took before its caller gave up on it).
  Status Publish(std::string_view exchange, std::string_view key, std::span<const std::byte> body,
                 std::chrono::milliseconds expiration = std::chrono::milliseconds(0));
  // Waits up to `timeout` for one frame and returns what it was. Heartbeats are sent and
  // checked inside; call it more often than every heartbeat/2. A broker-side channel or
  // connection close, a consumer cancel or a dead link is an error.
  Result<Event> Poll(std::chrono::milliseconds timeout);
  Status Ack(uint64_t delivery_tag);
  // Cancels our consumer (the last one started), then deletes the queue (and its messages).
  Status DeleteQueue(std::string_view name);
  // AMQP close handshake (channel, then connection), then drops the socket.
  Status Close();

  // Bounds the following RPCs by min(rpc_timeout, time left until `deadline`).
  void SetRpcDeadline(Deadline deadline);
  int fd() const;
  int heartbeat_s() const;  // as negotiated
  const std::string& endpoint() const { return endpoint_; }

 private:
  Session() = default;
  Status Login(const SessionConfig& config, Deadline deadline);
  Status Rpc(std::string_view what);
  Result<bool> PassiveCheck(bool queue, std::string_view name);
  Result<Event> ReadNonDelivery();

  Connection conn_;
  std::string endpoint_;
  std::chrono::milliseconds rpc_timeout_{};
  OwnedBytes consumer_tag_;
};

// Session::Open, then the whole topology, prefetch, confirms and consume: what the transport
// does on Connect and after every reconnect. Bounded by `deadline`.
Result<Session> OpenWithTopology(const SessionConfig& config, const Topology& topology,
                                 Deadline deadline);

}  // namespace p2p::broker::amqp
