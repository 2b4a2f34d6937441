#include "broker/amqp_session.h"

#include <openssl/ssl.h>

#include <algorithm>

#include "broker/amqp_error.h"

namespace p2p::broker::amqp {
namespace {

constexpr amqp_channel_t kChannel = 1;         // publishes, consumer, topology
constexpr amqp_channel_t kScratchChannel = 2;  // passive checks that may be closed by a 404

timeval ToTimeval(std::chrono::milliseconds d) {
  d = std::max(d, std::chrono::milliseconds(0));
  return {static_cast<time_t>(d.count() / 1000), static_cast<suseconds_t>(d.count() % 1000 * 1000)};
}

std::chrono::milliseconds Remaining(Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return std::max(left, std::chrono::milliseconds(1));
}

Status ConfigureTls(amqp_socket_t* socket, const AmqpUrl& url) {
  amqp_ssl_socket_set_verify_peer(socket, url.verify_peer);
  amqp_ssl_socket_set_verify_hostname(socket, url.verify_peer);
  if (int rc = amqp_ssl_socket_set_ssl_versions(socket, AMQP_TLSv1_2, AMQP_TLSvLATEST); rc != 0) {
    return FromLibraryStatus(rc, "requiring TLS >= 1.2");
  }
  if (!url.ca_file.empty()) {
    if (amqp_ssl_socket_set_cacert(socket, url.ca_file.c_str()) != AMQP_STATUS_OK) {
      return InvalidArgument("cannot load the CA file '{}' (cacertfile)", url.ca_file);
    }
  } else {
    auto* ctx = static_cast<SSL_CTX*>(amqp_ssl_socket_get_context(socket));
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      return InvalidArgument("cannot load the system CA store; pass ?cacertfile=CA.pem");
    }
  }
  if (!url.cert_file.empty() &&
      amqp_ssl_socket_set_key(socket, url.cert_file.c_str(), url.key_file.c_str()) != 0) {
    return InvalidArgument("cannot load client certificate '{}' / key '{}'", url.cert_file,
                           url.key_file);
  }
  return Status::Ok();
}

Result<amqp_socket_t*> NewSocket(amqp_connection_state_t state, const AmqpUrl& url) {
  amqp_socket_t* socket = url.tls ? amqp_ssl_socket_new(state) : amqp_tcp_socket_new(state);
  if (socket == nullptr) return Status(StatusCode::kInternal, "rabbitmq-c: cannot create a socket");
  if (url.tls) P2P_RETURN_IF_ERROR(ConfigureTls(socket, url));
  return socket;
}

Status Unreachable(const AmqpUrl& url, int rc) {
  Status s = FromLibraryStatus(rc, "connecting");
  if (rc == AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED) {
    return {s.code(), fmt::format("TLS verification of {} failed: {} (the broker's certificate "
                                  "does not name '{}'; use a host name it lists)",
                                  url.Endpoint(), s.message(), url.host)};
  }
  if (rc == AMQP_STATUS_SSL_PEER_VERIFY_FAILED) {
    return {s.code(), fmt::format("TLS verification of {} failed: {} (give the broker's CA with "
                                  "?cacertfile=CA.pem, or ?verify=verify_none to skip the check: "
                                  "insecure)",
                                  url.Endpoint(), s.message())};
  }
  if (url.tls) {
    return Unavailable("cannot reach RabbitMQ over TLS at {}: {}; is that an amqps listener?",
                       url.Endpoint(), s.message());
  }
  return Unavailable(
      "cannot reach RabbitMQ at {}: {}; is the broker running? For a local one "
      "run scripts/start-rabbitmq.sh {}",
      url.Endpoint(), s.message(), url.port);
}

}  // namespace

Result<Session> Session::Open(const SessionConfig& config, Deadline deadline) {
  Session s;
  s.conn_ = Connection::New();
  if (!s.conn_) return Status(StatusCode::kInternal, "rabbitmq-c: out of memory");
  s.endpoint_ = config.url.Endpoint();
  s.rpc_timeout_ = config.rpc_timeout;
  P2P_ASSIGN_OR_RETURN(amqp_socket_t * socket, NewSocket(s.conn_.get(), config.url));
  timeval tv = ToTimeval(Remaining(deadline));
  int rc = amqp_socket_open_noblock(socket, config.url.host.c_str(), config.url.port, &tv);
  if (rc != AMQP_STATUS_OK) return Unreachable(config.url, rc);
  P2P_RETURN_IF_ERROR(s.Login(config, deadline));
  amqp_channel_open(s.conn_.get(), kChannel);
  P2P_RETURN_IF_ERROR(s.Rpc("opening channel 1"));
  return s;
}

Status Session::Login(const SessionConfig& config, Deadline deadline) {
  timeval tv = ToTimeval(Remaining(deadline));
  amqp_set_handshake_timeout(conn_.get(), &tv);
  SetRpcDeadline(deadline);
  const AmqpUrl& u = config.url;
  amqp_rpc_reply_t r =
      amqp_login(conn_.get(), u.vhost.c_str(), 0, AMQP_DEFAULT_FRAME_SIZE, config.heartbeat_s,
                 AMQP_SASL_METHOD_PLAIN, u.user.c_str(), u.password.c_str());
  Status s = FromRpcReply(
      r, fmt::format("logging in to {} as '{}', vhost '{}'", endpoint_, u.user, u.vhost));
  if (!s.ok() && r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
      r.library_error != AMQP_STATUS_TIMEOUT) {
    // RabbitMQ drops the socket on a failed login unless the client asked for a close frame.
    return {s.code(), s.message() +
                          " (the broker hung up during login: wrong user/password, "
                          "ACCESS_REFUSED, or a vhost that does not exist?)"};
  }
  return s;
}

Status Session::Rpc(std::string_view what) {
  return FromRpcReply(amqp_get_rpc_reply(conn_.get()), what);
}

void Session::SetRpcDeadline(Deadline deadline) {
  timeval tv = ToTimeval(std::min(rpc_timeout_, Remaining(deadline)));
  amqp_set_rpc_timeout(conn_.get(), &tv);
}

Status Session::DeclareExchange(std::string_view name) {
  amqp_exchange_declare(conn_.get(), kChannel, BytesOf(name), amqp_cstring_bytes("direct"),
                        /*passive=*/0, /*durable=*/0, /*auto_delete=*/1, /*internal=*/0,
                        amqp_empty_table);
  return Rpc(fmt::format("declaring exchange {}", name));
}

Status Session::DeclareQueue(std::string_view name, std::chrono::milliseconds expiry) {
  amqp_table_entry_t expires;
  expires.key = amqp_cstring_bytes("x-expires");
  expires.value.kind = AMQP_FIELD_KIND_I32;
  expires.value.value.i32 = static_cast<int32_t>(std::clamp<int64_t>(expiry.count(), 1, INT32_MAX));
  amqp_table_t args{1, &expires};
  amqp_queue_declare(conn_.get(), kChannel, BytesOf(name), /*passive=*/0, /*durable=*/0,
                     /*exclusive=*/0, /*auto_delete=*/0, args);
  return Rpc(fmt::format("declaring queue {}", name));
}

Status Session::Purge(std::string_view name) {
  amqp_queue_purge(conn_.get(), kChannel, BytesOf(name));
  return Rpc(fmt::format("purging queue {}", name));
}

Status Session::Bind(std::string_view queue, std::string_view exchange, std::string_view key) {
  amqp_queue_bind(conn_.get(), kChannel, BytesOf(queue), BytesOf(exchange), BytesOf(key),
                  amqp_empty_table);
  return Rpc(fmt::format("binding {} to {} with key {}", queue, exchange, key));
}

Status Session::SetPrefetch(uint16_t count) {
  amqp_basic_qos(conn_.get(), kChannel, 0, count, /*global=*/0);
  return Rpc("setting prefetch (basic.qos)");
}

Status Session::EnableConfirms() {
  amqp_confirm_select(conn_.get(), kChannel);
  return Rpc("enabling publisher confirms");
}

namespace {
// RabbitMQ refuses a second exclusive consumer with 403 "... in exclusive use"; the AMQP spec
// suggests 405 RESOURCE_LOCKED.
bool IsExclusiveUseRefusal(const amqp_rpc_reply_t& reply) {
  const uint16_t code = ServerReplyCode(reply);
  if (code == AMQP_RESOURCE_LOCKED) return true;
  if (code != AMQP_ACCESS_REFUSED) return false;
  const auto* close = static_cast<const amqp_channel_close_t*>(reply.reply.decoded);
  const std::string_view text(static_cast<const char*>(close->reply_text.bytes),
                              close->reply_text.len);
  return text.find("exclusive use") != std::string_view::npos;
}
}  // namespace

Status Session::Consume(std::string_view queue, bool exclusive) {
  // Exclusive: a second process started with the same rank and run id is refused by the broker
  // (RESOURCE_LOCKED) instead of silently splitting this rank's messages with us.
  amqp_basic_consume_ok_t* ok =
      amqp_basic_consume(conn_.get(), kChannel, BytesOf(queue), amqp_empty_bytes, /*no_local=*/0,
                         /*no_ack=*/0, exclusive ? 1 : 0, amqp_empty_table);
  const amqp_rpc_reply_t reply = amqp_get_rpc_reply(conn_.get());
  if (IsChannelClose(reply) && IsExclusiveUseRefusal(reply)) {
    // Fatal on the first connect; a reconnect retries it (IsQueueInExclusiveUse): after a network
    // drop the broker may still hold our own previous connection's consumer for a while.
    return InvalidArgument(
        "queue {} {}: is another peer running with the same --rank and --run-id? (or this "
        "peer's previous connection has not timed out yet)",
        queue, kQueueInExclusiveUse);
  }
  P2P_RETURN_IF_ERROR(FromRpcReply(reply, fmt::format("consuming from {}", queue)));
  consumer_tag_ = OwnedBytes::Dup(ok->consumer_tag);
  return Status::Ok();
}

Result<bool> Session::QueueExists(std::string_view name) { return PassiveCheck(true, name); }
Result<bool> Session::ExchangeExists(std::string_view name) { return PassiveCheck(false, name); }

Result<bool> Session::PassiveCheck(bool queue, std::string_view name) {
  amqp_channel_open(conn_.get(), kScratchChannel);
  P2P_RETURN_IF_ERROR(Rpc("opening scratch channel 2"));
  if (queue) {
    amqp_queue_declare(conn_.get(), kScratchChannel, BytesOf(name), 1, 0, 0, 0, amqp_empty_table);
  } else {
    amqp_exchange_declare(conn_.get(), kScratchChannel, BytesOf(name), amqp_cstring_bytes("direct"),
                          1, 0, 0, 0, amqp_empty_table);
  }
  amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_.get());
  if (IsChannelClose(r) && ServerReplyCode(r) == AMQP_NOT_FOUND) {
    amqp_channel_close_ok_t close_ok{};
    int rc =
        amqp_send_method(conn_.get(), kScratchChannel, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
    P2P_RETURN_IF_ERROR(FromLibraryStatus(rc, "acknowledging channel close"));
    return false;
  }
  P2P_RETURN_IF_ERROR(FromRpcReply(r, fmt::format("checking {}", name)));
  amqp_channel_close(conn_.get(), kScratchChannel, AMQP_REPLY_SUCCESS);
  P2P_RETURN_IF_ERROR(Rpc("closing scratch channel 2"));
  return true;
}

Status Session::Publish(std::string_view exchange, std::string_view key,
                        std::span<const std::byte> body, std::chrono::milliseconds expiration) {
  amqp_basic_properties_t props{};
  props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
  props.delivery_mode = 1;  // transient: the queues are not durable either
  props.content_type = amqp_cstring_bytes("application/octet-stream");
  const std::string ttl = std::to_string(std::max<int64_t>(1, expiration.count()));
  if (expiration.count() > 0) {
    props._flags |= AMQP_BASIC_EXPIRATION_FLAG;
    props.expiration = amqp_cstring_bytes(ttl.c_str());  // milliseconds, as a decimal string
  }
  int rc = amqp_basic_publish(conn_.get(), kChannel, BytesOf(exchange), BytesOf(key),
                              /*mandatory=*/0, /*immediate=*/0, &props, BytesOf(body));
  return FromLibraryStatus(rc, fmt::format("publishing to {} with key {}", exchange, key));
}

Result<Event> Session::Poll(std::chrono::milliseconds timeout) {
  amqp_maybe_release_buffers(conn_.get());
  timeval tv = ToTimeval(timeout);
  Delivery d;
  amqp_rpc_reply_t r = amqp_consume_message(conn_.get(), d.envelope.out(), &tv, 0);
  if (r.reply_type == AMQP_RESPONSE_NORMAL) {
    d.envelope.MarkFilled();
    return Event(std::move(d));
  }
  if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
    if (r.library_error == AMQP_STATUS_TIMEOUT) return Event();
    if (r.library_error == AMQP_STATUS_UNEXPECTED_STATE) return ReadNonDelivery();
  }
  return FromRpcReply(r, fmt::format("receiving from {}", endpoint_));
}

// amqp_consume_message put back a frame that is not a basic.deliver; read and classify it.
Result<Event> Session::ReadNonDelivery() {
  amqp_frame_t frame;
  int rc = amqp_simple_wait_frame(conn_.get(), &frame);
  P2P_RETURN_IF_ERROR(FromLibraryStatus(rc, fmt::format("reading from {}", endpoint_)));
  if (frame.frame_type != AMQP_FRAME_METHOD) return Event(Other{});
  const amqp_method_t& m = frame.payload.method;
  switch (m.id) {
    case AMQP_BASIC_ACK_METHOD: {
      const auto* a = static_cast<const amqp_basic_ack_t*>(m.decoded);
      return Event(Confirm{a->delivery_tag, a->multiple != 0, true});
    }
    case AMQP_BASIC_NACK_METHOD: {
      const auto* n = static_cast<const amqp_basic_nack_t*>(m.decoded);
      return Event(Confirm{n->delivery_tag, n->multiple != 0, false});
    }
    case AMQP_BASIC_RETURN_METHOD: {  // unroutable (we never set mandatory): read and drop
      amqp_message_t message;
      amqp_rpc_reply_t r = amqp_read_message(conn_.get(), frame.channel, &message, 0);
      P2P_RETURN_IF_ERROR(FromRpcReply(r, "reading a returned message"));
      amqp_destroy_message(&message);
      return Event(Other{});
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
      amqp_channel_close_ok_t ok{};
      amqp_send_method(conn_.get(), frame.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
      return FromCloseMethod(m, endpoint_);
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
      amqp_connection_close_ok_t ok{};
      amqp_send_method(conn_.get(), 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      return FromCloseMethod(m, endpoint_);
    }
    case AMQP_BASIC_CANCEL_METHOD:
      return Unavailable("{}: the broker cancelled our consumer (queue deleted?)", endpoint_);
    default:  // connection.blocked/unblocked, channel.flow ...: nothing to do
      return Event(Other{});
  }
}

Status Session::Ack(uint64_t delivery_tag) {
  int rc = amqp_basic_ack(conn_.get(), kChannel, delivery_tag, /*multiple=*/0);
  return FromLibraryStatus(rc, fmt::format("acknowledging delivery {}", delivery_tag));
}

Status Session::DeleteQueue(std::string_view name) {
  if (consumer_tag_.get().bytes != nullptr) {
    amqp_basic_cancel(conn_.get(), kChannel, consumer_tag_.get());
    P2P_RETURN_IF_ERROR(Rpc(fmt::format("cancelling consumer {}", consumer_tag_.view())));
    consumer_tag_.reset();
  }
  amqp_queue_delete(conn_.get(), kChannel, BytesOf(name), /*if_unused=*/0, /*if_empty=*/0);
  return Rpc(fmt::format("deleting queue {}", name));
}

Status Session::Close() {
  if (!conn_) return Status::Ok();
  Status s = FromRpcReply(amqp_channel_close(conn_.get(), kChannel, AMQP_REPLY_SUCCESS),
                          "closing channel");
  Status c =
      FromRpcReply(amqp_connection_close(conn_.get(), AMQP_REPLY_SUCCESS), "closing connection");
  conn_.reset();
  return s.ok() ? c : s;
}

int Session::fd() const { return conn_ ? amqp_get_sockfd(conn_.get()) : -1; }
int Session::heartbeat_s() const { return conn_ ? amqp_get_heartbeat(conn_.get()) : 0; }

Result<Session> OpenWithTopology(const SessionConfig& config, const Topology& topology,
                                 Deadline deadline) {
  P2P_ASSIGN_OR_RETURN(Session s, Session::Open(config, deadline));
  s.SetRpcDeadline(deadline);
  P2P_RETURN_IF_ERROR(s.DeclareExchange(topology.exchange));
  P2P_RETURN_IF_ERROR(s.DeclareQueue(topology.queue, topology.queue_expiry));
  if (topology.purge) P2P_RETURN_IF_ERROR(s.Purge(topology.queue));
  for (const std::string& key : topology.binding_keys) {
    s.SetRpcDeadline(deadline);
    P2P_RETURN_IF_ERROR(s.Bind(topology.queue, topology.exchange, key));
  }
  s.SetRpcDeadline(deadline);
  P2P_RETURN_IF_ERROR(s.SetPrefetch(topology.prefetch));
  P2P_RETURN_IF_ERROR(s.EnableConfirms());
  P2P_RETURN_IF_ERROR(s.Consume(topology.queue));
  s.SetRpcDeadline(Clock::now() + std::chrono::hours(24));  // back to the plain RPC timeout
  return s;
}

}  // namespace p2p::broker::amqp
