// AMQP URLs as p2ptrain accepts them (the RabbitMQ URI spec, rabbitmq.com/uri-spec.html, with
// its common query parameters):
//
//   amqp[s]://[user[:password]@]host[:port][/vhost][?key=value&...]
//
// - Defaults: user/password guest/guest, port 5672 (amqp) or 5671 (amqps), vhost "/".
// - user, password, host, vhost and query values are percent-decoded ("p%40ss" -> "p@ss").
// - vhost: no path or "/" means the default vhost "/" (the spec maps "amqp://h/" to the empty
//   vhost, which RabbitMQ never has; we prefer what users mean). "/%2F" is also "/"; "/prod"
//   is "prod". An unencoded '/' inside the vhost is rejected: write it as %2F.
// - IPv6 literals in brackets: amqp://[::1]:5672/.
// - Query keys: heartbeat=<seconds>; for amqps only: cacertfile=<PEM CA file>,
//   certfile=<PEM>&keyfile=<PEM> (client certificate, both or neither), verify=verify_peer
//   (default) | verify_none (disables peer AND hostname verification; explicit opt-in only).
//   Unknown keys are rejected, so typos do not silently weaken TLS.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace p2p::broker {

struct AmqpUrl {
  bool tls = false;
  std::string host = "localhost";  // without IPv6 brackets
  uint16_t port = 5672;
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
  std::optional<int> heartbeat_s;   // from ?heartbeat=
  std::string ca_file;              // from ?cacertfile= (empty: the system trust store)
  std::string cert_file, key_file;  // client certificate, from ?certfile= / ?keyfile=
  bool verify_peer = true;          // false only with ?verify=verify_none

  // "host:port", "[::1]:port" for IPv6; for error messages.
  std::string Endpoint() const;
  // The URL with the password replaced by "***"; safe to log.
  std::string Redacted() const;
};

// Parses `url`; InvalidArgument naming the offending part otherwise. Does no I/O.
Result<AmqpUrl> ParseAmqpUrl(std::string_view url);

// RFC 3986 percent-decoding ("%2F" -> "/"); InvalidArgument on a malformed escape.
Result<std::string> PercentDecode(std::string_view s);

}  // namespace p2p::broker
