// The SPIRT round (docs/spirt.md): each peer keeps its model in its own Redis database.
//
// Average: (a) the peer's gradient is pushed onto a list in its database (where SPIRT's functions
// push theirs), (b) P2P.LAVG averages the list there, (c) the peer announces {samples, length,
// SHA-256} of that average to every other peer through the mailbox (authenticated), (d) fetches
// every other peer's average from that peer's database and checks it against the announcement
// (a mismatch is an error naming the peer; nothing is applied), copies it into its own database,
// and (e) P2P.AVG aggregates all of them, sample-weighted in rank order: the bits of
// allgather-average's mean. Update: (f) P2P.UPDATE steps the parameters in the database and the
// peer reads them back, so evaluation, checkpoints and param_hash see the database's parameters.
//
// With in_db = false (--in-db off) the same keys and messages, but the peer fetches the list and
// the averages and computes the means and the optimizer step itself (the same kernels), then
// writes the parameters back: bitwise the same result.
//
// Every key carries the run id and a TTL (the backstop); a round's own keys are deleted two
// rounds later (by then every peer has fetched them: each announced the round after), and
// Cleanup deletes all keys of the run.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "ml/optimizer.h"
#include "spirt/db_heartbeat.h"
#include "spirt/keys.h"
#include "store/client.h"
#include "sync/mailbox.h"
#include "sync/strategy.h"

namespace p2p::spirt {

struct SpirtOptions {
  std::string run_id;
  bool in_db = true;
  std::chrono::milliseconds peer_timeout{std::chrono::seconds(60)};
  std::chrono::milliseconds key_ttl{std::chrono::hours(24)};
  ml::OptimizerOptions optimizer{};  // P2P.UPDATE's hyperparameters (lr comes from the optimizer)
  // > 0: PING the other members' databases this often (DbHeartbeat); one that does not answer
  // within heartbeat_timeout makes its peer suspected.
  std::chrono::milliseconds heartbeat{0};
  std::chrono::milliseconds heartbeat_timeout{std::chrono::seconds(10)};
  // Keep the parameters and optimizer state of before the last update in the database, so that
  // LoadState can undo one round (the view change after a lost peer, --on-failure continue).
  bool rollback = false;
};

class SpirtStrategy final : public sync::Strategy {
 public:
  // `databases[r]` is rank r's database; this peer's own is connected now (and, in-db, must have
  // the p2ptrain module), the others when first read. InvalidArgument for an optimizer the module
  // cannot run in-db (rmsprop, adagrad).
  static Result<std::unique_ptr<SpirtStrategy>> Create(sync::Mailbox& mailbox,
                                                       std::vector<store::ConnectOptions> databases,
                                                       SpirtOptions options);

  // Writes the initial parameters into this peer's database (fresh optimizer state).
  Status Init(std::span<const float> params);
  // Steps (a)-(e). In-db the aggregate stays in the database and `grad` keeps this peer's own
  // gradient; client-side `grad` becomes the aggregate.
  Status Average(sync::Round round, uint32_t samples, std::span<float> grad) override;
  // Step (f) on the last Average's aggregate; `params` ends as the database's parameters.
  Status Update(std::span<float> params, std::span<const float> grad, ml::Optimizer& optimizer);
  // The store path of --offload (docs/spirt.md): the next round's functions write their gradients
  // into this peer's database themselves. BeginFunctionRound makes the next round's list with
  // one empty slot per task (each function LSETs its own, so the list is in task order whatever
  // order they finish in) and says where the functions find the parameters; FunctionsPushed
  // gives the tasks' sample counts, and that round's Average then averages the list with them
  // (P2P.LAVG ... WEIGHTS, the bits of the offload pool's WeightedSum) instead of pushing `grad`.
  struct FunctionRound {
    store::ConnectOptions database;  // this peer's own: a function never sees another's
    std::string params_key, list_key;
    uint64_t params_version = 0;  // changes every round: the functions cache per version
  };
  Result<FunctionRound> BeginFunctionRound(size_t tasks);
  void FunctionsPushed(std::vector<uint64_t> samples);
  // The round and update counters (and, with options.rollback, the database's parameters and
  // optimizer state): ElasticSync saves them before each round and restores them when a view
  // change makes the survivors redo a round, so a redone round uses the same keys on every
  // peer and an undone update is undone in the database too (one round back at most).
  std::vector<std::vector<float>> SaveState() const override;
  Status LoadState(std::vector<std::vector<float>> state) override;
  // Stops the database heartbeat (nobody reads the databases any more), then deletes every key of
  // this run in this peer's database; returns how many.
  Result<uint64_t> Cleanup();

  store::RedisClient& own() { return *own_; }
  // nullptr without options.heartbeat (or alone).
  DbHeartbeat* db_heartbeat() { return db_heartbeat_.get(); }

 private:
  SpirtStrategy(sync::Mailbox& mailbox, std::vector<store::ConnectOptions> databases,
                SpirtOptions options, store::RedisClient own);
  Result<std::string> PerPeerAverage(uint64_t n, std::span<const float> grad);
  // The per-peer mean of round n's list with the functions' sample counts (in-db: P2P.LAVG).
  Result<std::string> ListAverage(uint64_t n, const std::vector<uint64_t>& weights, size_t floats);
  Result<store::RedisClient*> Database(int rank);
  // Fetches rank q's announced average of round n, checks it and copies it into our database.
  Result<std::string> FetchChecked(uint64_t n, int q, const broker::Envelope& announcement,
                                   uint32_t& samples);
  Status Expire(const std::string& key);
  Status DeleteRound(uint64_t n, bool keep_average);
  // Copies params and state to their :prev keys before an update (options.rollback), and back.
  Status KeepPrevious();
  Status RestorePrevious();
  std::vector<std::string> UpdateArgs(float lr, int64_t step) const;

  sync::Mailbox& mailbox_;
  std::vector<store::ConnectOptions> databases_;
  SpirtOptions options_;
  RunKeys keys_;
  std::unique_ptr<store::RedisClient> own_;
  std::vector<std::unique_ptr<store::RedisClient>> others_;
  uint64_t rounds_ = 0;  // rounds started; round n's keys use n = rounds_ - 1
  int64_t steps_ = 0;    // updates applied (in-db: P2P.UPDATE's STEP is steps_ + 1)
  // Client-side: this round's inputs in rank order.
  std::vector<std::vector<float>> inputs_;
  std::vector<uint64_t> weights_;
  // Store path: round n's list was filled by functions with these sample counts (kept until the
  // next function round: a round redone after a view change averages the same list again).
  struct Pushed {
    uint64_t n = 0;
    std::vector<uint64_t> samples;
  };
  std::optional<Pushed> pushed_;
  std::unique_ptr<DbHeartbeat> db_heartbeat_;
};

}  // namespace p2p::spirt
