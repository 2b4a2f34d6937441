#include "store/address.h"

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace p2p::store {
namespace {

Result<int> ParseNumber(std::string_view text, std::string_view what, int lo, int hi,
                        std::string_view url) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < lo ||
      value > hi) {
    return InvalidArgument("store URL '{}': {} '{}' is not a number in [{}, {}]", url, what, text,
                           lo, hi);
  }
  return value;
}

// The URL with any password replaced, so errors never echo a secret.
std::string Redacted(std::string_view url) {
  const size_t at = url.rfind('@');
  const size_t scheme = url.find("://");
  if (at == std::string_view::npos || scheme == std::string_view::npos || at < scheme) {
    return std::string(url);
  }
  const std::string_view userinfo = url.substr(scheme + 3, at - scheme - 3);
  const size_t colon = userinfo.find(':');
  if (colon == std::string_view::npos) return std::string(url);
  return std::string(url.substr(0, scheme + 3 + colon)) + ":***" + std::string(url.substr(at));
}

Result<StoreAddress> ParseUnix(std::string_view rest, std::string_view url) {
  StoreAddress a;
  a.kind = StoreAddress::Kind::kUnix;
  const size_t q = rest.find('?');
  a.path = std::string(rest.substr(0, q));
  if (a.path.empty() || a.path[0] != '/') {
    return InvalidArgument(
        "store URL '{}': unix:// needs an absolute socket path (unix:///run/x.sock)", url);
  }
  if (q != std::string_view::npos) {
    const std::string_view query = rest.substr(q + 1);
    if (!query.starts_with("db=")) {
      return InvalidArgument("store URL '{}': the only query parameter is db=N", url);
    }
    P2P_ASSIGN_OR_RETURN(a.db, ParseNumber(query.substr(3), "db", 0, 1 << 20, url));
  }
  return a;
}

Result<StoreAddress> ParseTcp(std::string_view rest, std::string_view url) {
  StoreAddress a;
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos && slash + 1 < rest.size()) {
    P2P_ASSIGN_OR_RETURN(a.db, ParseNumber(rest.substr(slash + 1), "db", 0, 1 << 20, url));
  }
  const size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    const size_t colon = userinfo.find(':');
    a.user = std::string(userinfo.substr(0, colon));
    if (colon != std::string_view::npos) a.password = std::string(userinfo.substr(colon + 1));
    authority = authority.substr(at + 1);
  }
  const size_t colon = authority.rfind(':');
  a.host = std::string(authority.substr(0, colon));
  if (colon != std::string_view::npos) {
    P2P_ASSIGN_OR_RETURN(a.port, ParseNumber(authority.substr(colon + 1), "port", 1, 65535, url));
  }
  if (a.host.empty()) return InvalidArgument("store URL '{}': no host", url);
  return a;
}

}  // namespace

std::string StoreAddress::Describe() const {
  if (kind == Kind::kUnix)
    return db == 0 ? "unix://" + path : fmt::format("unix://{}?db={}", path, db);
  const std::string who = user.empty() ? "" : user + "@";
  return fmt::format("redis://{}{}:{}/{}", who, host, port, db);
}

Result<StoreAddress> ParseStoreUrl(std::string_view url) {
  constexpr std::string_view kRedis = "redis://", kUnix = "unix://";
  if (url.starts_with(kUnix)) return ParseUnix(url.substr(kUnix.size()), Redacted(url));
  if (url.starts_with(kRedis)) return ParseTcp(url.substr(kRedis.size()), Redacted(url));
  return InvalidArgument(
      "store URL '{}': expected redis://[user[:password]@]host[:port][/db] or unix:///path",
      Redacted(url));
}

Result<std::optional<std::string>> ResolvePassword(const StoreAddress& address,
                                                   const std::string& password_file,
                                                   const char* env_var) {
  if (!password_file.empty()) {
    std::ifstream in(password_file, std::ios::binary);
    if (!in) return IoError("cannot read the Redis password file '{}'", password_file);
    std::ostringstream text;
    text << in.rdbuf();
    std::string password = text.str();
    if (password.ends_with('\n')) password.pop_back();
    if (password.ends_with('\r')) password.pop_back();
    if (password.empty())
      return InvalidArgument("the Redis password file '{}' is empty", password_file);
    return std::optional<std::string>(std::move(password));
  }
  if (env_var != nullptr) {
    if (const char* value = std::getenv(env_var); value != nullptr && *value != '\0') {
      return std::optional<std::string>(value);
    }
  }
  return address.password;
}

}  // namespace p2p::store
