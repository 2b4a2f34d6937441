#include "store/client.h"

#include <hiredis/hiredis.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "store/blob.h"

namespace p2p::store {
namespace {

timeval ToTimeval(std::chrono::milliseconds ms) {
  return {static_cast<time_t>(ms.count() / 1000),
          static_cast<suseconds_t>(ms.count() % 1000 * 1000)};
}

redisContext* Open(const StoreAddress& a, timeval tv) {
  if (a.kind == StoreAddress::Kind::kUnix) return redisConnectUnixWithTimeout(a.path.c_str(), tv);
  return redisConnectWithTimeout(a.host.c_str(), a.port, tv);
}

Reply Copy(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::kArray;
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(Copy(r->element[i]));
      break;
    default:
      out.type = Reply::Type::kNil;
  }
  return out;
}

// hiredis' answer to a refused AUTH, turned into advice.
Status AuthError(const std::string& name, std::string_view server_message) {
  return InvalidArgument(
      "{}: authentication refused ({}); check the password (--store-password-file or "
      "$P2P_REDIS_PASSWORD) and the user",
      name, server_message);
}

// hiredis writes with plain write(): a server that went away would kill the process with SIGPIPE
// instead of giving us EPIPE. Ignore it (once, and only if nobody installed a handler).
void IgnoreSigpipe() {
  struct sigaction current {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    signal(SIGPIPE, SIG_IGN);
  }
}

}  // namespace

Result<RedisClient> RedisClient::Connect(const ConnectOptions& options) {
  IgnoreSigpipe();
  const std::string name = options.address.Describe();
  redisContext* context = Open(options.address, ToTimeval(options.connect_timeout));
  if (context == nullptr) return Internal("{}: hiredis could not allocate a context", name);
  if (context->err != 0) {
    std::string why = context->errstr;
    redisFree(context);
    return Unavailable(
        "{}: cannot connect ({}); is redis-server running there? "
        "(scripts/start-redis.sh starts one)",
        name, why);
  }
  RedisClient client(context, name);
  if (redisSetTimeout(context, ToTimeval(options.command_timeout)) != REDIS_OK) {
    return Internal("{}: cannot set the command timeout", name);
  }
  if (options.password) {
    std::vector<std::string_view> auth = {"AUTH"};
    if (!options.address.user.empty()) auth.push_back(options.address.user);
    auth.push_back(*options.password);
    Result<Reply> r = client.Command(auth);
    if (!r.ok()) {
      if (r.status().code() != StatusCode::kInvalidArgument) return r.status();
      return AuthError(name, r.status().message());
    }
  }
  if (options.address.db != 0) {
    const std::string db = std::to_string(options.address.db);
    P2P_RETURN_IF_ERROR(client.Command({"SELECT", db}).status());
  }
  Status ping = client.Ping();
  if (!ping.ok() && ping.message().find("NOAUTH") != std::string::npos) {
    return AuthError(name, "the server requires a password and none was given");
  }
  P2P_RETURN_IF_ERROR(ping);
  return client;
}

RedisClient::RedisClient(RedisClient&& other) noexcept
    : context_(std::exchange(other.context_, nullptr)),
      name_(std::move(other.name_)),
      broken_(other.broken_) {}

RedisClient& RedisClient::operator=(RedisClient&& other) noexcept {
  if (this != &other) {
    if (context_ != nullptr) redisFree(context_);
    context_ = std::exchange(other.context_, nullptr);
    name_ = std::move(other.name_);
    broken_ = other.broken_;
  }
  return *this;
}

RedisClient::~RedisClient() {
  if (context_ != nullptr) redisFree(context_);
}

Result<std::shared_ptr<void>> RedisClient::Raw(std::span<const std::string_view> args) {
  if (context_ == nullptr || broken_) {
    return Unavailable("{}: the connection was lost earlier; reconnect", name_);
  }
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (std::string_view a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  void* raw = redisCommandArgv(context_, static_cast<int>(argv.size()), argv.data(), lens.data());
  if (raw == nullptr) {
    broken_ = true;
    const bool timed_out = context_->err == REDIS_ERR_IO &&
                           (std::strstr(context_->errstr, "temporarily unavailable") != nullptr ||
                            std::strstr(context_->errstr, "timed out") != nullptr);
    const std::string cmd = args.empty() ? "" : std::string(args[0]);
    if (timed_out)
      return Timeout("{}: {} got no answer in time ({})", name_, cmd, context_->errstr);
    return Unavailable("{}: {} failed, connection lost ({})", name_, cmd, context_->errstr);
  }
  std::shared_ptr<void> reply(raw, [](void* r) { freeReplyObject(r); });
  const auto* r = static_cast<const redisReply*>(raw);
  if (r->type == REDIS_REPLY_ERROR) {
    return InvalidArgument("{}: {} refused: {}", name_, args.empty() ? "" : args[0],
                           std::string_view(r->str, r->len));
  }
  return reply;
}

Result<Reply> RedisClient::Command(std::span<const std::string_view> args) {
  P2P_ASSIGN_OR_RETURN(std::shared_ptr<void> raw, Raw(args));
  return Copy(static_cast<const redisReply*>(raw.get()));
}

Status RedisClient::Ping() {
  P2P_ASSIGN_OR_RETURN(Reply r, Command({"PING"}));
  if (r.type != Reply::Type::kStatus || r.str != "PONG") {
    return Internal("{}: PING answered '{}', not PONG", name_, r.str);
  }
  return Status::Ok();
}

Status RedisClient::SetBlob(std::string_view key, std::span<const float> values) {
  if (values.size() > kMaxBlobFloats) {
    return InvalidArgument("{}: {} floats for key '{}' exceed the blob limit {}", name_,
                           values.size(), key, kMaxBlobFloats);
  }
  const std::string blob = EncodeBlob(values);
  return Command({"SET", key, blob}).status();
}

Result<std::vector<float>> RedisClient::GetBlob(std::string_view key) {
  const std::string_view args[] = {"GET", key};
  P2P_ASSIGN_OR_RETURN(std::shared_ptr<void> raw, Raw(args));
  const auto* r = static_cast<const redisReply*>(raw.get());
  if (r->type == REDIS_REPLY_NIL) return NotFound("{}: no key '{}'", name_, key);
  if (r->type != REDIS_REPLY_STRING)
    return Internal("{}: GET '{}' did not answer a string", name_, key);
  Result<std::vector<float>> values = DecodeBlob(std::string_view(r->str, r->len));
  if (!values.ok()) return values.status().Annotate(fmt::format("{}: key '{}'", name_, key));
  return values;
}

Status RedisClient::RequireModule() {
  P2P_ASSIGN_OR_RETURN(Reply r, Command({"COMMAND", "INFO", "P2P.AVG"}));
  const bool loaded = r.type == Reply::Type::kArray && !r.elements.empty() &&
                      r.elements[0].type == Reply::Type::kArray;
  if (loaded) return Status::Ok();
  return InvalidArgument(
      "{}: the p2ptrain module is not loaded (no P2P.AVG command); start redis-server with "
      "--loadmodule /path/to/p2ptrain_redis.so (scripts/start-redis.sh does)",
      name_);
}

}  // namespace p2p::store
