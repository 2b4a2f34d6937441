// QueueClient: named work queues on RabbitMQ (the default exchange, manual acks) for code outside
// broker/ - the offload pool and its `function --serve` workers - without rabbitmq-c types or the
// transport's session internals (broker/amqp_session.h stays private to broker/).
//
// One connection, one channel; every call ends within a bound (Open by its deadline, RPCs by the
// RPC deadline, Receive by its timeout). Thread-safety: none; one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "broker/amqp_url.h"
#include "broker/transport.h"
#include "common/status.h"

namespace p2p::broker {

namespace amqp {
class Session;
}

struct QueueMessage {
  std::string routing_key;   // for the default exchange: the queue it was published to
  bool redelivered = false;  // the broker delivered it before to a consumer that did not ack
  Bytes body;
  uint64_t delivery_tag = 0;  // for Ack
};

class QueueClient {
 public:
  // Connects and logs in by `deadline`. heartbeat_s 0 disables heartbeats (a caller that may not
  // call Receive for minutes). Errors name host:port; ACCESS_REFUSED is InvalidArgument.
  static Result<QueueClient> Open(const AmqpUrl& url, int heartbeat_s, Deadline deadline);

  QueueClient(QueueClient&&) noexcept;
  QueueClient& operator=(QueueClient&&) noexcept;
  ~QueueClient();  // drops the connection; call Close() first for a polite goodbye

  // Non-durable, removed by the broker after `expiry` without consumers or declares.
  Status DeclareQueue(std::string_view name, std::chrono::milliseconds expiry);
  Status SetPrefetch(uint16_t count);
  // Exclusive refuses a second consumer; a shared work queue (competing consumers) passes false.
  Status Consume(std::string_view queue, bool exclusive);
  // To the queue `queue` through the default exchange; a non-zero `expiration` is a TTL.
  Status Publish(std::string_view queue, std::span<const std::byte> body,
                 std::chrono::milliseconds expiration = std::chrono::milliseconds(0));
  // The next delivery within `timeout`, nullopt when none came; heartbeats are serviced inside,
  // so call it more often than every heartbeat/2. Errors when the connection or channel failed.
  Result<std::optional<QueueMessage>> Receive(std::chrono::milliseconds timeout);
  Status Ack(uint64_t delivery_tag);
  Status DeleteQueue(std::string_view name);  // cancels our last consumer first
  Status Close();

  // Bounds the following RPCs by min(RPC timeout, time left until `deadline`).
  void SetRpcDeadline(Deadline deadline);
  int heartbeat_s() const;  // as negotiated
  const std::string& endpoint() const;

 private:
  explicit QueueClient(std::unique_ptr<amqp::Session> session);
  std::unique_ptr<amqp::Session> session_;
};

}  // namespace p2p::broker
