// One error convention for all of p2ptrain (STYLE.md habit 4).
//
// Fallible operations return `Status` or `Result<T>`; both are [[nodiscard]]. Expected outcomes
// (a timeout, a peer that left) are values, not errors. Broken invariants go through P2P_CHECK,
// which throws `InvariantError` stamped with file and line; only the CLI boundary catches it.
#pragma once

#include <fmt/format.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace p2p {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // the caller (user, file, peer) gave us something wrong
  kNotFound,         // a file, key or peer that should exist does not
  kDataLoss,         // corrupt or truncated data
  kIoError,          // the OS refused a read/write
  kTimeout,          // a deadline passed
  kUnavailable,      // a service or peer cannot be reached
  kInternal,
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // Adds context in front of the message: "reading shard.bin: truncated header".
  Status Annotate(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

template <typename... Args>
Status InvalidArgument(fmt::format_string<Args...> f, Args&&... args) {
  return {StatusCode::kInvalidArgument, fmt::format(f, std::forward<Args>(args)...)};
}
template <typename... Args>
Status NotFound(fmt::format_string<Args...> f, Args&&... args) {
  return {StatusCode::kNotFound, fmt::format(f, std::forward<Args>(args)...)};
}
template <typename... Args>
Status DataLoss(fmt::format_string<Args...> f, Args&&... args) {
  return {StatusCode::kDataLoss, fmt::format(f, std::forward<Args>(args)...)};
}
template <typename... Args>
Status IoError(fmt::format_string<Args...> f, Args&&... args) {
  return {StatusCode::kIoError, fmt::format(f, std::forward<Args>(args)...)};
}
template <typename... Args>
Status Timeout(fmt::format_string<Args...> f, Args&&... args) {
  return {StatusCode::kTimeout, fmt::format(f, std::forward<Args>(args)...)};
}
template <typename... Args>
Status Unavailable(fmt::format_string<Args...> f, Args&&... args) {
  return {StatusCode::kUnavailable, fmt::format(f, std::forward<Args>(args)...)};
}
template <typename... Args>
Status Internal(fmt::format_string<Args...> f, Args&&... args) {
  return {StatusCode::kInternal, fmt::format(f, std::forward<Args>(args)...)};
}

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const;
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

template <typename T>
const Status& Result<T>::status() const {
  static const Status kOkStatus;
  return ok() ? kOkStatus : std::get<Status>(v_);
}

// Thrown only for broken invariants (programming errors), never for bad input.
class InvariantError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

[[noreturn]] void FailCheck(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace p2p

#define P2P_CHECK(cond, ...)                                                              \
  do {                                                                                    \
    if (!(cond)) ::p2p::FailCheck(#cond, __FILE__, __LINE__, ::fmt::format(__VA_ARGS__)); \
  } while (0)

// Early return of a failed Status from a function that returns Status or Result<T>.
#define P2P_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::p2p::Status p2p_status_ = (expr);        \
    if (!p2p_status_.ok()) return p2p_status_; \
  } while (0)

#define P2P_CONCAT_INNER(a, b) a##b
#define P2P_CONCAT(a, b) P2P_CONCAT_INNER(a, b)
#define P2P_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()
// `P2P_ASSIGN_OR_RETURN(auto x, ReadThing());`
#define P2P_ASSIGN_OR_RETURN(lhs, expr) \
  P2P_ASSIGN_OR_RETURN_IMPL(P2P_CONCAT(p2p_result_, __LINE__), lhs, expr)
