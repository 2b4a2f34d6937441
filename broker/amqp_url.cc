#include "broker/amqp_url.h"

#include <array>
#include <cctype>
#include <charconv>
#include <functional>

namespace p2p::broker {
namespace {

constexpr uint16_t kAmqpPort = 5672;
constexpr uint16_t kAmqpsPort = 5671;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<int> ParseInt(std::string_view s, int lo, int hi, std::string_view what) {
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < lo || v > hi) {
    return InvalidArgument("{} '{}' is not an integer in [{}, {}]", what, s, lo, hi);
  }
  return v;
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

// "user:pass" -> user, password (both percent-decoded).
Status ParseUserInfo(std::string_view info, AmqpUrl& url) {
  size_t colon = info.find(':');
  P2P_ASSIGN_OR_RETURN(url.user, PercentDecode(info.substr(0, colon)));
  if (colon != std::string_view::npos) {
    P2P_ASSIGN_OR_RETURN(url.password, PercentDecode(info.substr(colon + 1)));
  }
  return Status::Ok();
}

// "host", "host:port", "[v6]", "[v6]:port".
Status ParseHostPort(std::string_view hp, AmqpUrl& url) {
  std::string_view host = hp, port;
  if (!hp.empty() && hp.front() == '[') {
    size_t close = hp.find(']');
    if (close == std::string_view::npos)
      return InvalidArgument("unterminated '[' in host '{}'", hp);
    host = hp.substr(1, close - 1);
    std::string_view rest = hp.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return InvalidArgument("junk after ']' in '{}'", hp);
      port = rest.substr(1);
      if (port.empty()) return InvalidArgument("empty port in '{}'", hp);
    }
  } else if (size_t colon = hp.rfind(':'); colon != std::string_view::npos) {
    host = hp.substr(0, colon);
    port = hp.substr(colon + 1);
    if (port.empty()) return InvalidArgument("empty port in '{}'", hp);
  }
  if (!host.empty()) {
    P2P_ASSIGN_OR_RETURN(url.host, PercentDecode(host));
  }
  if (!port.empty()) {
    P2P_ASSIGN_OR_RETURN(int p, ParseInt(port, 1, 65535, "port"));
    url.port = static_cast<uint16_t>(p);
  }
  return Status::Ok();
}

// "" or "/" -> "/", "/%2F" -> "/", "/name" -> "name".
Status ParseVhost(std::string_view path, AmqpUrl& url) {
  if (path.empty() || path == "/") return Status::Ok();
  std::string_view segment = path.substr(1);
  if (segment.find('/') != std::string_view::npos) {
    return InvalidArgument("vhost '{}' contains '/'; write a '/' inside a vhost name as %2F",
                           segment);
  }
  P2P_ASSIGN_OR_RETURN(url.vhost, PercentDecode(segment));
  return Status::Ok();
}

Status SetString(const std::string& value, std::string& field) {
  if (value.empty()) return InvalidArgument("empty file name in query");
  field = value;
  return Status::Ok();
}

using QuerySetter = std::function<Status(const std::string& value, AmqpUrl& url)>;
struct QueryKey {
  std::string_view key;
  bool tls_only;
  QuerySetter set;
};

// The one table of supported query parameters.
const std::array<QueryKey, 5>& QueryKeys() {
  static const std::array<QueryKey, 5> kKeys = {{
      {"heartbeat", false,
       [](const std::string& v, AmqpUrl& u) -> Status {
         P2P_ASSIGN_OR_RETURN(int s, ParseInt(v, 0, 65535, "heartbeat"));
         u.heartbeat_s = s;
         return Status::Ok();
       }},
      {"cacertfile", true,
       [](const std::string& v, AmqpUrl& u) { return SetString(v, u.ca_file); }},
      {"certfile", true,
       [](const std::string& v, AmqpUrl& u) { return SetString(v, u.cert_file); }},
      {"keyfile", true, [](const std::string& v, AmqpUrl& u) { return SetString(v, u.key_file); }},
      {"verify", true,
       [](const std::string& v, AmqpUrl& u) -> Status {
         if (v != "verify_peer" && v != "verify_none") {
           return InvalidArgument("verify must be verify_peer or verify_none, not '{}'", v);
         }
         u.verify_peer = v == "verify_peer";
         return Status::Ok();
       }},
  }};
  return kKeys;
}

Status ParseQueryItem(std::string_view item, AmqpUrl& url) {
  size_t eq = item.find('=');
  if (eq == std::string_view::npos) return InvalidArgument("query item '{}' has no '='", item);
  P2P_ASSIGN_OR_RETURN(std::string key, PercentDecode(item.substr(0, eq)));
  P2P_ASSIGN_OR_RETURN(std::string value, PercentDecode(item.substr(eq + 1)));
  for (const QueryKey& k : QueryKeys()) {
    if (k.key != key) continue;
    if (k.tls_only && !url.tls) return InvalidArgument("'{}' needs an amqps:// URL", key);
    return k.set(value, url);
  }
  return InvalidArgument(
      "unknown query parameter '{}' (supported: heartbeat, cacertfile, "
      "certfile, keyfile, verify)",
      key);
}

Status ParseQuery(std::string_view query, AmqpUrl& url) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    if (!item.empty()) P2P_RETURN_IF_ERROR(ParseQueryItem(item, url));
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
  }
  if (url.cert_file.empty() != url.key_file.empty()) {
    return InvalidArgument("certfile and keyfile go together (client certificate and its key)");
  }
  return Status::Ok();
}

Status ParseAfterScheme(std::string_view rest, AmqpUrl& url) {
  size_t q = rest.find('?');
  std::string_view query = q == std::string_view::npos ? "" : rest.substr(q + 1);
  rest = rest.substr(0, q);
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    P2P_RETURN_IF_ERROR(ParseUserInfo(authority.substr(0, at), url));
    authority = authority.substr(at + 1);
  }
  P2P_RETURN_IF_ERROR(ParseHostPort(authority, url));
  P2P_RETURN_IF_ERROR(ParseVhost(path, url));
  return ParseQuery(query, url);
}

}  // namespace

Result<std::string> PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    int hi = i + 2 < s.size() ? HexValue(s[i + 1]) : -1;
    int lo = hi >= 0 ? HexValue(s[i + 2]) : -1;
    if (lo < 0) return InvalidArgument("bad percent-escape at offset {} in '{}'", i, s);
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

Result<AmqpUrl> ParseAmqpUrl(std::string_view text) {
  AmqpUrl url;
  std::string_view rest;
  if (StartsWithNoCase(text, "amqps://")) {
    url.tls = true;
    url.port = kAmqpsPort;
    rest = text.substr(8);
  } else if (StartsWithNoCase(text, "amqp://")) {
    url.port = kAmqpPort;
    rest = text.substr(7);
  } else {
    return InvalidArgument("broker URL '{}' must start with amqp:// or amqps://", text);
  }
  for (char c : text) {
    if (static_cast<unsigned char>(c) <= ' ' || c == '#') {
      return InvalidArgument("broker URL must not contain spaces, control characters or '#'");
    }
  }
  Status s = ParseAfterScheme(rest, url);
  if (!s.ok()) return s.Annotate("parsing broker URL");
  return url;
}

std::string AmqpUrl::Endpoint() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

std::string AmqpUrl::Redacted() const {
  std::string vh = vhost == "/" ? "" : vhost;
  return fmt::format("{}://{}:***@{}/{}", tls ? "amqps" : "amqp", user, Endpoint(), vh);
}

}  // namespace p2p::broker
