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
  // Deletes every key of this run in this peer's database; returns how many.
  Result<uint64_t> Cleanup();

  store::RedisClient& own() { return *own_; }

 private:
  SpirtStrategy(sync::Mailbox& mailbox, std::vector<store::ConnectOptions> databases,
                SpirtOptions options, store::RedisClient own);
  Result<std::string> PerPeerAverage(uint64_t n, std::span<const float> grad);
  Result<store::RedisClient*> Database(int rank);
  // Fetches rank q's announced average of round n, checks it and copies it into our database.
  Result<std::string> FetchChecked(uint64_t n, int q, const broker::Envelope& announcement,
                                   uint32_t& samples);
  Status Expire(const std::string& key);
  Status DeleteRound(uint64_t n, bool keep_average);
  std::vector<std::string> UpdateArgs(float lr, int64_t step) const;

  sync::Mailbox& mailbox_;
  std::vector<store::ConnectOptions> databases_;
  SpirtOptions options_;
  RunKeys keys_;
  std::unique_ptr<store::RedisClient> own_;
  std::vector<std::unique_ptr<store::RedisClient>> others_;
  uint64_t rounds_ = 0;  // rounds started; round n's keys use n = rounds_ - 1
  int64_t steps_ = 0;    // in-db optimizer steps taken (P2P.UPDATE's STEP)
  // Client-side: this round's inputs in rank order.
  std::vector<std::vector<float>> inputs_;
  std::vector<uint64_t> weights_;
};

}  // namespace p2p::spirt
