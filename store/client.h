// A connection to one Redis database (hiredis, blocking, with timeouts), owned RAII.
//
// Every error names the database ("redis://127.0.0.1:6400/0: ...") and says what to do: a wrong
// password, a server that cannot be reached, a server without the p2ptrain module. After an I/O
// error or a timeout the connection is unusable (hiredis' rule) and every later call says so.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "store/address.h"

struct redisContext;  // hiredis, kept out of this header

namespace p2p::store {

struct ConnectOptions {
  StoreAddress address;
  std::optional<std::string> password;  // AUTH with it (see ResolvePassword); none: no AUTH
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds command_timeout{30000};
};

// A command's answer, copied out of hiredis. Error replies never get here: they become Status.
struct Reply {
  enum class Type { kString, kStatus, kInteger, kNil, kArray };
  Type type = Type::kNil;
  std::string str;  // kString, kStatus
  long long integer = 0;
  std::vector<Reply> elements;  // kArray
};

class RedisClient {
 public:
  // Connects, AUTHs (user and password if given), SELECTs the db and PINGs.
  // Unavailable if the server cannot be reached; InvalidArgument if AUTH or SELECT is refused.
  static Result<RedisClient> Connect(const ConnectOptions& options);

  RedisClient(RedisClient&& other) noexcept;
  RedisClient& operator=(RedisClient&& other) noexcept;
  ~RedisClient();

  // The database, as StoreAddress::Describe (no password).
  const std::string& name() const { return name_; }

  // Runs one command (binary-safe arguments). An error reply is InvalidArgument carrying the
  // server's message and the database's name; a lost connection is Unavailable; a timeout Timeout.
  Result<Reply> Command(std::span<const std::string_view> args);
  Result<Reply> Command(std::initializer_list<std::string_view> args) {
    return Command(std::span<const std::string_view>(args.begin(), args.size()));
  }

  Status Ping();
  Status SetBlob(std::string_view key, std::span<const float> values);
  // NotFound if the key does not exist; DataLoss/InvalidArgument if it is not a valid blob.
  Result<std::vector<float>> GetBlob(std::string_view key);
  // InvalidArgument naming the database and saying how to load the module, unless P2P.AVG exists.
  Status RequireModule();

 private:
  RedisClient(redisContext* context, std::string name)
      : context_(context), name_(std::move(name)) {}
  // Runs a command and keeps hiredis' reply (GetBlob decodes it without an extra copy).
  Result<std::shared_ptr<void>> Raw(std::span<const std::string_view> args);

  redisContext* context_ = nullptr;
  std::string name_;
  bool broken_ = false;
};

}  // namespace p2p::store
