#include "peer/spirt_peer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "peer/cli_checks.h"
#include "peer/offload.h"
#include "spirt/directory.h"

namespace p2p::peer {

void AddStoreFlags(CLI::App& cmd, PeerOptions& o) {
  cmd.add_option("--store", o.store,
                 "spirt: this peer's Redis database, redis://[user@]host[:port][/db] or "
                 "unix:///path/redis.sock[?db=N] (default: this rank's line of --store-peers). "
                 "The password comes from --store-password-file or $P2P_REDIS_PASSWORD, never "
                 "from the command line");
  cmd.add_option("--store-password-file", o.store_password_file,
                 "spirt: file holding the password of --store's database");
  cmd.add_option("--store-peers", o.store_peers,
                 "spirt: file with one line per rank, '<rank> <store URL> [<password file>]': "
                 "where every peer's database is (`launch --store redis` writes it)");
  cmd.add_option("--in-db", o.in_db,
                 "spirt: on = average and update inside Redis (the p2ptrain module); off = fetch "
                 "and compute in this process (same bits)")
      ->check(CLI::IsMember({"on", "off"}))
      ->default_str("on");
  cmd.add_option("--store-ttl", o.store_ttl_s,
                 "spirt: seconds every key of the run lives at most if the run does not delete "
                 "it (a backstop; an orderly end deletes them)")
      ->transform(PositiveReal())
      ->default_str("86400");
}

Status FinishStoreFlags(const TrainConfig& config, PeerOptions& o) {
  const bool any_store = !o.store.empty() || !o.store_peers.empty();
  if (o.strategy != "spirt") {
    if (any_store) {
      return InvalidArgument("--store and --store-peers are for --strategy spirt");
    }
    return Status::Ok();
  }
  if (o.store_peers.empty() && (config.size > 1 || o.store.empty())) {
    return InvalidArgument(
        "--strategy spirt needs --store-peers FILE naming every rank's Redis database (and "
        "optionally --store URL for this peer's); `p2ptrain launch --store redis` starts the "
        "databases and writes the file");
  }
  if (o.compression != "none") {
    return InvalidArgument(
        "--strategy spirt moves float32 blobs through Redis; it cannot use "
        "--compression {}",
        o.compression);
  }
  if (o.aggregation != "mean") {
    return InvalidArgument(
        "--strategy spirt averages inside Redis (P2P.AVG, the mean); it "
        "cannot use --aggregation {}",
        o.aggregation);
  }
  if (config.resume) {
    return InvalidArgument(
        "--strategy spirt keeps the optimizer state in Redis, not in "
        "checkpoints; it cannot --resume yet");
  }
  return Status::Ok();
}

Result<std::unique_ptr<spirt::SpirtStrategy>> MakeSpirtStrategy(sync::Mailbox& mailbox,
                                                                const TrainConfig& config,
                                                                const PeerOptions& o,
                                                                std::chrono::milliseconds timeout) {
  std::vector<store::ConnectOptions> databases(static_cast<size_t>(config.size));
  if (!o.store_peers.empty()) {
    P2P_ASSIGN_OR_RETURN(databases, spirt::ReadStoreDirectory(o.store_peers, config.size));
  }
  store::ConnectOptions& own = databases[static_cast<size_t>(config.rank)];
  if (!o.store.empty()) {
    auto address = store::ParseStoreUrl(o.store);
    if (!address.ok()) return address.status().Annotate("--store");
    own.address = std::move(*address);
    P2P_ASSIGN_OR_RETURN(own.password, store::ResolvePassword(own.address, o.store_password_file));
  }
  // A database that stops answering fails the round within --peer-timeout (at least 30 s: a
  // 10M-float P2P.LAVG takes a while on a loaded machine).
  const auto command_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(std::max(o.peer_timeout_s, 30.0) * 1000));
  for (auto& db : databases) db.command_timeout = command_timeout;
  spirt::SpirtOptions options{
      .run_id = o.run_id,
      .in_db = o.in_db == "on",
      .peer_timeout = timeout,
      .key_ttl = std::chrono::milliseconds(static_cast<int64_t>(o.store_ttl_s * 1000)),
      .optimizer = config.optimizer,
      // The databases' heartbeat rides on the peers' (--heartbeat): a database that does not
      // answer a PING within --peer-timeout suspects its peer.
      .heartbeat = std::chrono::milliseconds(static_cast<int64_t>(o.heartbeat_s * 1000)),
      .heartbeat_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.peer_timeout_s * 1000)),
      // The survivors of a lost peer may have to undo a round (peer_run.cc: membership).
      .rollback = o.on_failure == "continue" && o.heartbeat_s > 0};
  auto strategy = spirt::SpirtStrategy::Create(mailbox, std::move(databases), std::move(options));
  if (!strategy.ok()) return strategy.status().Annotate("--strategy spirt");
  spdlog::info("SPIRT: this peer's database is {}; averaging and update {}",
               (*strategy)->own().name(), o.in_db == "on" ? "inside Redis" : "in this process");
  return strategy;
}

Status AttachSpirt(Trainer& trainer, spirt::SpirtStrategy& spirt, const OffloadConfig& offload) {
  P2P_RETURN_IF_ERROR(spirt.Init(trainer.model().Params()));
  OffloadStore db{
      .begin_round = [&spirt](size_t tasks) -> Result<std::pair<offload::Task::Store, uint64_t>> {
        P2P_ASSIGN_OR_RETURN(const auto round, spirt.BeginFunctionRound(tasks));
        offload::Task::Store where{.url = round.database.address.Describe(),
                                   .password = round.database.password.value_or(""),
                                   .params_key = round.params_key,
                                   .list_key = round.list_key};
        return std::make_pair(std::move(where), round.params_version);
      },
      .pushed =
          [&spirt](std::vector<uint64_t> samples) { spirt.FunctionsPushed(std::move(samples)); }};
  P2P_RETURN_IF_ERROR(AttachOffload(trainer, offload, std::move(db)));
  trainer.set_update_hook(
      [&spirt](std::span<float> params, std::span<const float> grad, ml::Optimizer& optimizer) {
        return spirt.Update(params, grad, optimizer);
      });
  return Status::Ok();
}

}  // namespace p2p::peer
