// A private redis-server for one test: its own temp dir and unix socket (or a loopback port), a
// random requirepass, no persistence, and (by default) the p2ptrain module loaded. Started in the
// constructor (blocks until the server logs that it accepts connections, with a deadline), stopped
// in the destructor. Never a shared server.
#pragma once

#include <memory>
#include <string>

#include "store/client.h"
#include "tests/support/subprocess.h"

namespace p2p::test {

class RedisServer {
 public:
  struct Options {
    bool load_module = true;
    bool tcp = false;  // listen on a free loopback port instead of a unix socket
  };
  RedisServer() : RedisServer(Options{}) {}
  explicit RedisServer(Options options);
  ~RedisServer();

  // False (and the log says why) if the server did not come up.
  bool ready() const { return ready_; }
  const std::string& url() const { return url_; }
  const std::string& password() const { return password_; }
  int port() const { return port_; }
  std::string log() const;
  // Connect options for url() with the right password.
  store::ConnectOptions connect_options() const;
  // A connected client (gtest-fails the caller's expectation through the Result).
  Result<store::RedisClient> Connect() const;
  // Stops the server now (SIGTERM, waits); later connections fail.
  void Stop();

 private:
  TempDir dir_;
  std::string password_, url_, log_path_;
  int port_ = 0;
  std::unique_ptr<Child> child_;
  bool ready_ = false;
};

// Path of the module under test (CMake defines P2P_REDIS_MODULE).
std::string RedisModulePath();

}  // namespace p2p::test
