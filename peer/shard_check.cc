#include "peer/shard_check.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <regex>
#include <vector>

namespace p2p::peer {

std::string WithRankPlaceholder(const std::string& path) {
  static const std::regex kRankPart("rank-[0-9]+");
  if (std::regex_search(path, kRankPart)) return std::regex_replace(path, kRankPart, "rank-{rank}");
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  return (dir / "rank-{rank}.shard").string();
}

namespace {

std::string RankMismatch(const std::string& path, const ml::ShardInfo& info,
                         const ShardExpectation& want) {
  if (info.size != want.size) {
    return fmt::format(
        "it was split for --size {} (rank {} of {}) but this run has --size {}; write shards for "
        "this run with `p2ptrain split --size {}`",
        info.size, info.rank, info.size, want.size, want.size);
  }
  return fmt::format(
      "it holds rank {}'s samples of {} but this process is rank {}; every rank needs its own "
      "shard, or all ranks train on the same samples. With `p2ptrain launch`, put the {{rank}} "
      "placeholder in the path: --shard {}",
      info.rank, info.size, want.rank, WithRankPlaceholder(path));
}

}  // namespace

Status CheckShardInfo(const std::string& path, const ml::ShardInfo& info,
                      const ShardExpectation& want) {
  std::vector<std::string> problems;
  if (want.check_rank && (info.rank != want.rank || info.size != want.size)) {
    problems.push_back(RankMismatch(path, info, want));
  }
  if (want.dataset && info.dataset != *want.dataset) {
    problems.push_back(fmt::format(
        "it holds dataset '{}' but this run's --dataset is '{}'; pass --dataset {} (the same on "
        "every peer) or use a shard of {}",
        info.dataset, *want.dataset, info.dataset, *want.dataset));
  }
  if (want.seed && info.seed != *want.seed) {
    problems.push_back(
        fmt::format("it was partitioned with --data-seed {} but this run's --data-seed is {}; pass "
                    "--data-seed {} or split again with --data-seed {}",
                    info.seed, *want.seed, info.seed, *want.seed));
  }
  if (problems.empty()) return Status::Ok();
  return InvalidArgument("--shard {} does not belong to this run: {}", path,
                         fmt::join(problems, "; and "));
}

Status CheckShardForRun(const TrainConfig& config, bool check_rank) {
  if (config.shard_path.empty()) return Status::Ok();
  P2P_ASSIGN_OR_RETURN(const ml::ShardInfo info, ml::ReadShardInfo(config.shard_path));
  return CheckShardInfo(config.shard_path, info,
                        {.dataset = config.data.name,
                         .seed = config.data.seed,
                         .check_rank = check_rank,
                         .rank = config.rank,
                         .size = config.size});
}

}  // namespace p2p::peer
