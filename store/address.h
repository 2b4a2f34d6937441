// Where a peer's Redis database is: redis://[user[:password]@]host[:port][/db] or
// unix:///path/to/redis.sock[?db=N], and where its password comes from.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace p2p::store {

struct StoreAddress {
  enum class Kind { kTcp, kUnix };
  Kind kind = Kind::kTcp;
  std::string host;  // kTcp
  int port = 6379;   // kTcp
  std::string path;  // kUnix: the socket
  int db = 0;
  std::string user;                     // empty: the default user
  std::optional<std::string> password;  // from the URL; prefer ResolvePassword's env/file

  // The URL without any password, for errors and logs ("redis://127.0.0.1:6379/0").
  std::string Describe() const;
};

// InvalidArgument naming the part that is wrong (scheme, port, db, empty host or path).
Result<StoreAddress> ParseStoreUrl(std::string_view url);

// The password to AUTH with: the contents of `password_file` if given (one trailing newline
// stripped), else the environment variable `env_var` if set, else the URL's, else none. A file
// that cannot be read is an IoError naming it; so the password need never be on a command line.
Result<std::optional<std::string>> ResolvePassword(const StoreAddress& address,
                                                   const std::string& password_file,
                                                   const char* env_var = "P2P_REDIS_PASSWORD");

}  // namespace p2p::store
