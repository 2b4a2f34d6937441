#include "broker/amqp_queue_client.h"

#include "broker/amqp_session.h"

namespace p2p::broker {

Result<QueueClient> QueueClient::Open(const AmqpUrl& url, int heartbeat_s, Deadline deadline) {
  const amqp::SessionConfig config{.url = url, .heartbeat_s = heartbeat_s};
  P2P_ASSIGN_OR_RETURN(amqp::Session session, amqp::Session::Open(config, deadline));
  return QueueClient(std::make_unique<amqp::Session>(std::move(session)));
}

QueueClient::QueueClient(std::unique_ptr<amqp::Session> session) : session_(std::move(session)) {}
QueueClient::QueueClient(QueueClient&&) noexcept = default;
QueueClient& QueueClient::operator=(QueueClient&&) noexcept = default;
QueueClient::~QueueClient() = default;

Status QueueClient::DeclareQueue(std::string_view name, std::chrono::milliseconds expiry) {
  return session_->DeclareQueue(name, expiry);
}
Status QueueClient::SetPrefetch(uint16_t count) { return session_->SetPrefetch(count); }
Status QueueClient::Consume(std::string_view queue, bool exclusive) {
  return session_->Consume(queue, exclusive);
}
Status QueueClient::Publish(std::string_view queue, std::span<const std::byte> body,
                            std::chrono::milliseconds expiration) {
  return session_->Publish("", queue, body, expiration);
}

Result<std::optional<QueueMessage>> QueueClient::Receive(std::chrono::milliseconds timeout) {
  P2P_ASSIGN_OR_RETURN(amqp::Event event, session_->Poll(timeout));
  const auto* d = std::get_if<amqp::Delivery>(&event);
  if (d == nullptr) return std::optional<QueueMessage>();  // nothing, or a frame for rabbitmq-c
  const amqp_envelope_t& e = d->envelope.get();
  QueueMessage m;
  m.routing_key.assign(static_cast<const char*>(e.routing_key.bytes), e.routing_key.len);
  m.redelivered = e.redelivered != 0;
  m.body.assign(d->envelope.body().begin(), d->envelope.body().end());
  m.delivery_tag = d->envelope.delivery_tag();
  return std::optional<QueueMessage>(std::move(m));
}

Status QueueClient::Ack(uint64_t delivery_tag) { return session_->Ack(delivery_tag); }
Status QueueClient::DeleteQueue(std::string_view name) { return session_->DeleteQueue(name); }
Status QueueClient::Close() { return session_->Close(); }
void QueueClient::SetRpcDeadline(Deadline deadline) { session_->SetRpcDeadline(deadline); }
int QueueClient::heartbeat_s() const { return session_->heartbeat_s(); }
const std::string& QueueClient::endpoint() const { return session_->endpoint(); }

}  // namespace p2p::broker
