#include "broker/amqp_error.h"

#include <string>

namespace p2p::broker::amqp {
namespace {

StatusCode CodeForLibraryStatus(int status) {
  switch (status) {
    case AMQP_STATUS_TIMEOUT:
      return StatusCode::kTimeout;
    case AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED:
    case AMQP_STATUS_CONNECTION_CLOSED:
    case AMQP_STATUS_SOCKET_ERROR:
    case AMQP_STATUS_HEARTBEAT_TIMEOUT:
    case AMQP_STATUS_SOCKET_CLOSED:
    case AMQP_STATUS_TCP_ERROR:
    case AMQP_STATUS_SSL_ERROR:
    case AMQP_STATUS_SSL_CONNECTION_FAILED:
      return StatusCode::kUnavailable;
    case AMQP_STATUS_BAD_URL:
    case AMQP_STATUS_INVALID_PARAMETER:
    case AMQP_STATUS_TABLE_TOO_BIG:
    case AMQP_STATUS_INCOMPATIBLE_AMQP_VERSION:
    case AMQP_STATUS_BROKER_UNSUPPORTED_SASL_METHOD:
    case AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED:
    case AMQP_STATUS_SSL_PEER_VERIFY_FAILED:
      return StatusCode::kInvalidArgument;
    default:
      return StatusCode::kInternal;
  }
}

StatusCode CodeForReply(uint16_t reply_code) {
  switch (reply_code) {
    case AMQP_CONNECTION_FORCED:
      return StatusCode::kUnavailable;
    case AMQP_NOT_FOUND:
      return StatusCode::kNotFound;
    case AMQP_ACCESS_REFUSED:
    case AMQP_NOT_ALLOWED:
    case AMQP_PRECONDITION_FAILED:
    case AMQP_RESOURCE_LOCKED:
      return StatusCode::kInvalidArgument;
    default:
      return StatusCode::kInternal;
  }
}

// Extra advice for the reply codes a user can fix.
std::string_view HintForReply(uint16_t reply_code) {
  switch (reply_code) {
    case AMQP_ACCESS_REFUSED:
      return " (check the user and password in the amqp:// URL, and the user's permissions on the "
             "vhost)";
    case AMQP_NOT_ALLOWED:
      return " (does the vhost in the URL exist, and may this user use it?)";
    default:
      return "";
  }
}

std::string_view AsView(amqp_bytes_t b) { return {static_cast<const char*>(b.bytes), b.len}; }

Status FromServerClose(uint16_t code, amqp_bytes_t text, bool channel, std::string_view what) {
  return {CodeForReply(code),
          fmt::format("{}: broker closed the {} with {}: {}{}", what,
                      channel ? "channel" : "connection", code, AsView(text), HintForReply(code))};
}

}  // namespace

Status FromLibraryStatus(int status, std::string_view what) {
  if (status >= 0) return Status::Ok();
  return {CodeForLibraryStatus(status),
          fmt::format("{}: {} (rabbitmq-c status {:#x})", what, amqp_error_string2(status),
                      static_cast<unsigned>(-status))};
}

Status FromCloseMethod(const amqp_method_t& method, std::string_view what) {
  if (method.id == AMQP_CONNECTION_CLOSE_METHOD) {
    const auto* m = static_cast<const amqp_connection_close_t*>(method.decoded);
    return FromServerClose(m->reply_code, m->reply_text, /*channel=*/false, what);
  }
  if (method.id == AMQP_CHANNEL_CLOSE_METHOD) {
    const auto* m = static_cast<const amqp_channel_close_t*>(method.decoded);
    return FromServerClose(m->reply_code, m->reply_text, /*channel=*/true, what);
  }
  return {StatusCode::kInternal,
          fmt::format("{}: unexpected method {}", what, amqp_method_name(method.id))};
}

Status FromRpcReply(const amqp_rpc_reply_t& reply, std::string_view what) {
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return Status::Ok();
    case AMQP_RESPONSE_NONE:
      return {StatusCode::kInternal, fmt::format("{}: missing RPC reply", what)};
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return FromLibraryStatus(reply.library_error, what);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      return FromCloseMethod(reply.reply, what);
  }
  return {StatusCode::kInternal, fmt::format("{}: unknown RPC reply type", what)};
}

uint16_t ServerReplyCode(const amqp_rpc_reply_t& reply) {
  if (reply.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION) return 0;
  if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
    return static_cast<const amqp_connection_close_t*>(reply.reply.decoded)->reply_code;
  }
  if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
    return static_cast<const amqp_channel_close_t*>(reply.reply.decoded)->reply_code;
  }
  return 0;
}

bool IsChannelClose(const amqp_rpc_reply_t& reply) {
  return reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
         reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD;
}

bool IsQueueInExclusiveUse(const Status& status) {
  return status.message().find(kQueueInExclusiveUse) != std::string::npos;
}

}  // namespace p2p::broker::amqp
