// Translates rabbitmq-c's two error channels into Status, in one place:
//  1. `int` status codes (amqp_status_enum, negative on failure) from socket-level calls such as
//     amqp_socket_open, amqp_basic_publish, amqp_basic_ack, amqp_simple_wait_frame;
//  2. `amqp_rpc_reply_t` from RPCs (amqp_login, declares, amqp_consume_message): NORMAL, a
//     LIBRARY_EXCEPTION carrying a channel-1 status code, or a SERVER_EXCEPTION carrying the
//     broker's connection.close / channel.close (reply code + text, e.g. 403 ACCESS_REFUSED).
//
// Mapping (what callers branch on; IsRetryable in broker/backoff.h):
//   network failures, heartbeat timeout, connection closed, 320 CONNECTION_FORCED  -> kUnavailable
//   AMQP_STATUS_TIMEOUT                                                           -> kTimeout
//   404 NOT_FOUND                                                                 -> kNotFound
//   403 ACCESS_REFUSED, 530 NOT_ALLOWED (e.g. unknown vhost), 406 PRECONDITION_FAILED,
//   bad parameters, TLS verification failures                                     ->
//   kInvalidArgument anything else -> kInternal
#pragma once

#include <cstdint>
#include <string_view>

#include "broker/amqp_handles.h"
#include "broker/backoff.h"
#include "common/status.h"

namespace p2p::broker::amqp {

// `what` names the operation, e.g. "publishing to p2p.run1" ; it prefixes the message.
Status FromLibraryStatus(int status, std::string_view what);
Status FromRpcReply(const amqp_rpc_reply_t& reply, std::string_view what);
// A connection.close or channel.close method that arrived outside an RPC (while consuming).
Status FromCloseMethod(const amqp_method_t& method, std::string_view what);

// The broker's reply code of a SERVER_EXCEPTION (403, 404, 406, ...), 0 for other replies.
uint16_t ServerReplyCode(const amqp_rpc_reply_t& reply);
// True when the server closed only the channel (the connection is still usable after
// channel.close-ok); false for connection.close and for library errors.
bool IsChannelClose(const amqp_rpc_reply_t& reply);

// Whether a failure is worth another attempt: broker::IsRetryable (broker/backoff.h), the one
// retry policy of the transport and the offload worker.
using ::p2p::broker::IsRetryable;

// Marker in the error of a consume refused because another connection consumes the queue.
inline constexpr std::string_view kQueueInExclusiveUse =
    "is already consumed by another connection";
// True for that error: fatal when connecting, retried when reconnecting.
bool IsQueueInExclusiveUse(const Status& status);

}  // namespace p2p::broker::amqp
