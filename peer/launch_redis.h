// `p2ptrain launch --store redis`: one private redis-server per peer (SPIRT's database per peer),
// started before the peers and stopped when the object goes (also when launch fails or is
// interrupted: RunGroup returns, the destructor runs; a killed launcher takes them along through
// PR_SET_PDEATHSIG).
//
// Each server: its own directory under a fresh 0700 temp dir, a unix socket only (--port 0), a
// random requirepass handed over on stdin (never argv) and written to a 0600 file for its peer,
// --save '' --appendonly no, the p2ptrain module loaded. The store directory file (0600,
// spirt/directory.h) names every rank's socket and password file.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace p2p::peer {

class LaunchedRedis {
 public:
  // Starts `size` servers and blocks until each logs that it accepts connections (or fails:
  // an error with its log's last lines), at most 30 s each. `module`: p2ptrain_redis.so.
  static Result<std::unique_ptr<LaunchedRedis>> Start(int size, const std::string& module);
  ~LaunchedRedis();
  LaunchedRedis(const LaunchedRedis&) = delete;
  LaunchedRedis& operator=(const LaunchedRedis&) = delete;

  const std::string& dir() const { return dir_; }
  // The file for every peer's --store-peers.
  std::string directory_file() const { return dir_ + "/stores"; }

 private:
  struct Server;
  explicit LaunchedRedis(std::string dir);
  Status StartOne(int rank, const std::string& module);
  void StopAll();

  std::string dir_;
  std::vector<std::unique_ptr<Server>> servers_;
};

// The module launch loads: `flag` if given, else $P2P_REDIS_MODULE, else
// <this executable's dir>/../redis_module/p2ptrain_redis.so (the build tree). InvalidArgument
// naming where it looked if there is none.
Result<std::string> FindRedisModule(const std::string& flag);

}  // namespace p2p::peer
