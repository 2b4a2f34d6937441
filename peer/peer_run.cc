#include "peer/peer_run.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <regex>

#include "common/hash.h"
#include "common/stop_signal.h"
#include "ml/threads.h"
#include "peer/attack.h"
#include "peer/cli.h"
#include "peer/elastic_join.h"
#include "peer/elastic_sync.h"
#include "peer/final_summary.h"
#include "peer/offload.h"
#include "peer/peer_security.h"
#include "peer/rendezvous_auth.h"
#include "peer/spirt_peer.h"
#include "peer/trainer.h"
#include "peer/transport_factory.h"
#include "sync/agreement.h"
#include "sync/codecs/codec.h"
#include "sync/epoch_summary.h"
#include "sync/membership/elastic.h"
#include "sync/membership/heartbeat.h"
#include "sync/rules/rule.h"
#include "sync/staleness.h"
#include "sync/strategy.h"

namespace p2p::peer {
namespace {

using broker::DeadlineIn;

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

// Per-epoch deltas of the counters that only grow (transport, strategy, mailbox rejects).
// The first epoch's rejects count from the mailbox's start, and its rejected_frames from the
// transport's: what was dropped while connecting, during the join and the start agreement (a
// forged message or HELLO that arrived early) is reported, not lost.
class EpochCounters {
 public:
  EpochCounters(broker::Transport& transport, const sync::Strategy& strategy,
                const sync::Mailbox& mailbox)
      : transport_(transport), strategy_(strategy), mailbox_(mailbox) {
    Snapshot();
    rejects_.clear();
    stats_.rejected = 0;
  }

  nlohmann::json Next() {
    const auto stats = transport_.Stats();
    const auto& t = strategy_.timings();
    nlohmann::json rejected = nlohmann::json::object();
    for (const auto& [reason, n] : mailbox_.rejects().by_reason) {
      const uint64_t before = rejects_.contains(reason) ? rejects_.at(reason) : 0;
      if (n > before) rejected[reason] = n - before;
    }
    nlohmann::json out = {
        {"send_s", t.send_seconds - timings_.send_seconds},
        {"wait_s", t.wait_seconds - timings_.wait_seconds},
        {"reduce_s", t.reduce_seconds - timings_.reduce_seconds},
        {"encode_s", t.encode_seconds - timings_.encode_seconds},
        {"decode_s", t.decode_seconds - timings_.decode_seconds},
        {"grad_bytes_raw", t.raw_bytes - timings_.raw_bytes},
        {"grad_bytes_encoded", t.encoded_bytes - timings_.encoded_bytes},
        {"compression_ratio", t.encoded_bytes > timings_.encoded_bytes
                                  ? double(t.raw_bytes - timings_.raw_bytes) /
                                        double(t.encoded_bytes - timings_.encoded_bytes)
                                  : 0.0},
        {"bytes_sent", stats.bytes_sent - stats_.bytes_sent},
        {"bytes_received", stats.bytes_received - stats_.bytes_received},
        {"messages_sent", stats.messages_sent - stats_.messages_sent},
        {"messages_received", stats.messages_received - stats_.messages_received},
        {"rejected", rejected},
        {"rejected_frames", stats.rejected - stats_.rejected},
        {"recovery", RecoveryJson()},
    };
    Snapshot();
    return out;
  }

 private:
  // Lost messages asked for and sent again this epoch (sync/mailbox.h).
  nlohmann::json RecoveryJson() const {
    const auto now = mailbox_.recovery();
    return {{"resend_requests", now.resend_requests - recovery_.resend_requests},
            {"resent", now.resent - recovery_.resent},
            {"installs_forwarded", now.installs_forwarded - recovery_.installs_forwarded}};
  }
  void Snapshot() {
    recovery_ = mailbox_.recovery();
    stats_ = transport_.Stats();
    timings_ = strategy_.timings();
    rejects_ = mailbox_.rejects().by_reason;
  }
  broker::Transport& transport_;
  const sync::Strategy& strategy_;
  const sync::Mailbox& mailbox_;
  broker::TransportStats stats_;
  sync::SyncTimings timings_;
  std::map<std::string, uint64_t> rejects_;
  sync::Mailbox::RecoveryCounts recovery_;
};

Result<int64_t> ParseSyncEvery(const std::string& text) {
  if (text == "epoch") return 0;
  int64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n < 1) {
    return InvalidArgument(
        "--sync-every '{}' is neither a positive number of minibatches nor "
        "'epoch'",
        text);
  }
  return n;
}

// With heartbeats a round waits while its members are alive (the failure detector ends the wait
// when one dies; a lost message is asked for again), up to --round-timeout; without them,
// --peer-timeout bounds every wait.
std::chrono::milliseconds RoundTimeout(const PeerOptions& options) {
  if (options.heartbeat_s > 0) return Millis(options.round_timeout_s);
  return Millis(options.peer_timeout_s);
}

nlohmann::json ViewChangesJson(std::vector<sync::membership::ViewChangeRecord> changes,
                               const sync::Mailbox& mailbox) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& c : changes) {
    list.push_back({{"view", c.view},
                    {"members", c.members},
                    {"evicted", c.evicted},
                    {"joined", c.joined},
                    {"resume_after_epoch", c.resume_after.epoch},
                    {"resume_after_step", c.resume_after.step},
                    {"recovery_s", c.recovery_seconds}});
  }
  return {{"view", mailbox.view().id},
          {"members", mailbox.view().members},
          {"view_changes", std::move(list)}};
}

// A robust rule's precondition (krum's n >= 2f + 3, ...) was checked for the run's size at start;
// a view that lost members must meet it too. Relaxing it (a smaller f) would weaken what the rule
// guarantees without the user knowing, so the survivors stop instead (docs/membership.md).
Status CheckRuleInView(const sync::rules::Rule& rule, const std::string& spec,
                       const sync::membership::View& view) {
  Status s = rule.CheckCount(view.members.size());
  if (s.ok()) return s;
  return Unavailable(
      "view {} has {} members (ranks {}), too few for --aggregation {}: {}; the survivors stop "
      "rather than weaken the rule (use a rule that fewer peers can meet)",
      view.id, view.members.size(), sync::membership::RankList(view.members), spec, s.message());
}

Status Train(Trainer& trainer, TrainConfig& config, const PeerOptions& options,
             broker::Transport& transport, PeerSecurity* security, const Attack* attack) {
  sync::Mailbox mailbox(transport,
                        {.run_id = options.run_id,
                         .max_rounds_ahead = sync::MaxRoundsAheadFor(options.staleness),
                         .authenticator = security ? security->authenticator() : nullptr});
  // A restarted peer (--join) runs its handshake in Rejoin, once the strategy can take its state.
  if (security != nullptr && !options.join) {
    P2P_RETURN_IF_ERROR(security->Join(mailbox, DeadlineIn(Millis(options.connect_timeout_s))));
  }
  auto* session =
      security ? dynamic_cast<sync::SessionAuthenticator*>(security->authenticator()) : nullptr;
  // options.compression is the canonical codec spec (FinishPeerFlags); stochastic codecs draw
  // from the run's seed per (rank, round).
  P2P_ASSIGN_OR_RETURN(auto codec, sync::codecs::ParseCodecSpec(options.compression));
  std::unique_ptr<spirt::SpirtStrategy> spirt_owned;  // --strategy spirt (peer/spirt_peer.h)
  if (options.strategy == "spirt") {
    P2P_ASSIGN_OR_RETURN(spirt_owned,
                         MakeSpirtStrategy(mailbox, config, options, RoundTimeout(options)));
  }
  sync::StrategyOptions strategy_options{
      .peer_timeout = RoundTimeout(options),
      .codec = std::move(codec),
      .seed = config.seed,
      .rule = options.aggregation,
      .significance = options.significance,
      .learning_rate = config.optimizer.lr,
      .parameters = [&trainer] { return std::span<const float>(trainer.model().Params()); },
      .staleness = options.staleness};
  if (attack != nullptr && attack->omniscient()) {
    strategy_options.omniscient_attack = {
        .attackers = attack->attackers(),
        .corrupt = [attack](const std::vector<std::span<const float>>& honest,
                            std::span<float> grad) { attack->CorruptFromHonest(honest, grad); }};
  }
  P2P_ASSIGN_OR_RETURN(
      auto strategy, spirt_owned ? Result<std::unique_ptr<sync::Strategy>>(std::move(spirt_owned))
                                 : sync::MakeStrategy(options.strategy, mailbox, strategy_options));
  auto* spirt_strategy = dynamic_cast<spirt::SpirtStrategy*>(strategy.get());
  if (spirt_strategy != nullptr) {
    P2P_RETURN_IF_ERROR(AttachSpirt(trainer, *spirt_strategy, config.offload));
  }
  // The codec's error-feedback buffers go into checkpoints and come back on --resume.
  P2P_RETURN_IF_ERROR(trainer.set_sync_state(
      [&strategy] { return strategy->SaveState(); },
      [&strategy](Trainer::SyncState state) { return strategy->LoadState(std::move(state)); }));
  int64_t agreed = 0;
  if (options.join) {
    P2P_ASSIGN_OR_RETURN(
        const Admission admission,
        Rejoin(mailbox, session, trainer, DeadlineIn(Millis(options.connect_timeout_s)),
               DeadlineIn(Millis(options.join_timeout_s))));
    agreed = admission.steps_per_epoch;
  } else {
    // Everything that must match, including where everyone starts (resumed runs).
    const std::string fingerprint = fmt::format(
        "{} epochs={} first_epoch={} compression={} strategy={} aggregation={} "
        "significance={} staleness={}",
        config.Fingerprint(), config.epochs, trainer.first_epoch(), options.compression,
        options.strategy, options.aggregation, options.significance, options.staleness);
    P2P_ASSIGN_OR_RETURN(
        auto steps, sync::AgreeOnStart(mailbox, fingerprint, HashFloats(trainer.model().Params()),
                                       static_cast<uint64_t>(trainer.local_steps()),
                                       DeadlineIn(Millis(options.connect_timeout_s))));
    agreed = static_cast<int64_t>(*std::max_element(steps.begin(), steps.end()));
  }
  trainer.set_steps_per_epoch(agreed);
  if (!options.join) {
    spdlog::info(
        "all {} peers agree on the configuration and initial parameters; {} steps per "
        "epoch ({} with data here); gradients combined by {}",
        config.size, agreed, trainer.local_steps(), options.strategy);
  }

  // Failure detection from here on: every peer is up and agreed (docs/membership.md).
  std::optional<sync::membership::Heartbeat> heartbeat;
  std::optional<sync::membership::Membership> membership;
  std::optional<JoinDesk> desk;  // admits restarted peers (peer/elastic_join.h)
  if (options.heartbeat_s > 0) {
    mailbox.StartFailureDetection(Millis(options.peer_timeout_s));
    heartbeat.emplace(mailbox, Millis(options.heartbeat_s));
    if (options.on_failure == "continue") {
      membership.emplace(mailbox, sync::membership::MembershipOptions{});
      trainer.keep_rollback(true);
      desk.emplace(mailbox, session, trainer, *membership, agreed,
                   Millis(options.connect_timeout_s));
    }
  }
  P2P_ASSIGN_OR_RETURN(std::shared_ptr<sync::rules::Rule> rule,
                       sync::rules::MakeRule(options.aggregation));
  ElasticSync elastic(mailbox, *strategy, membership ? &*membership : nullptr,
                      RoundTimeout(options), [rule, &options](const sync::membership::View& view) {
                        return CheckRuleInView(*rule, options.aggregation, view);
                      });
  trainer.set_gradient_hook(
      [&](const StepInfo& info, std::span<float> grad) -> Result<RoundOutcome> {
        if (attack != nullptr) attack->Corrupt(info.epoch, info.round, grad);
        if (desk) P2P_RETURN_IF_ERROR(desk->Poll());
        return elastic.Round(info, grad);
      });
  std::vector<int> joiners;  // agreed at the last epoch end
  trainer.set_epoch_hook([&](int epoch, sync::EpochTotals& totals) -> Result<RoundOutcome> {
    if (desk) {
      P2P_RETURN_IF_ERROR(desk->Poll());
      totals.joiners = desk->Requests();
    }
    P2P_ASSIGN_OR_RETURN(const RoundOutcome outcome, elastic.EpochEnd(epoch, totals));
    joiners = totals.joiners;
    return outcome;
  });
  trainer.set_between_epochs_hook([&](int epoch) {
    return desk ? desk->Admit(epoch, std::exchange(joiners, {})) : Status::Ok();
  });
  EpochCounters counters(transport, *strategy, mailbox);
  trainer.add_metrics_extra([&](int) {
    nlohmann::json extra = counters.Next();
    extra["transport"] = options.transport;
    extra["compression"] = options.compression;
    extra["strategy"] = options.strategy;
    extra["aggregation"] = options.aggregation;
    extra["authenticated"] = security != nullptr;
    extra["size"] = config.size;
    if (membership) extra.update(ViewChangesJson(membership->TakeChanges(), mailbox));
    return extra;
  });

  P2P_ASSIGN_OR_RETURN(EpochResult last, trainer.Run());
  P2P_RETURN_IF_ERROR(elastic.End(static_cast<uint64_t>(last.epoch), last.param_hash));
  heartbeat.reset();  // before the transport closes
  if (spirt_strategy != nullptr) {
    // Every peer has passed the end agreement: nobody reads our keys any more.
    P2P_ASSIGN_OR_RETURN(const uint64_t deleted, spirt_strategy->Cleanup());
    spdlog::info("SPIRT: deleted the run's {} keys from {}", deleted, spirt_strategy->own().name());
  }
  if (mailbox.rejects().total() > 0) {
    spdlog::warn("dropped {} messages during the run (see \"rejected\" in the metrics)",
                 mailbox.rejects().total());
    mailbox.LogRejectSummary();  // each reason per claimed sender, with its count
  }
  const size_t members = mailbox.view().members.size();
  fmt::print("{}\n",
             FinalSummary(last, config.evaluation,
                          members == static_cast<size_t>(config.size)
                              ? fmt::format("all {} peers agree", config.size)
                              : fmt::format("all {} live peers agree (view {}: ranks {})", members,
                                            mailbox.view().id,
                                            sync::membership::RankList(mailbox.view().members))));
  return Status::Ok();
}

}  // namespace

Status FinishPeerFlags(TrainConfig& config, PeerOptions& options) {
  P2P_ASSIGN_OR_RETURN(config.sync_every, ParseSyncEvery(options.sync_every));
  // A peer already talking to RabbitMQ offloads through the same broker unless told otherwise.
  if (config.offload.mode == "amqp" && config.offload.pool.broker.empty()) {
    config.offload.pool.broker = options.broker_url;
  }
  P2P_ASSIGN_OR_RETURN(const auto codec,
                       sync::codecs::ResolveCompression({.spec = options.compression,
                                                         .qsgd_bits = options.qsgd_bits,
                                                         .qsgd_bucket = options.qsgd_bucket,
                                                         .topk_ratio = options.topk_ratio}));
  options.compression = sync::codecs::FormatCodecSpec(codec);
  auto rule = sync::rules::MakeRule(options.aggregation);
  if (!rule.ok()) return rule.status().Annotate("--aggregation");
  options.aggregation = (*rule)->spec();
  if (Status s = (*rule)->CheckCount(static_cast<size_t>(config.size)); !s.ok()) {
    return s.Annotate(fmt::format("--aggregation with --size {}", config.size));
  }
  const bool omniscient_attack = AttackNeedsHonestGradients(options.attack);
  if (options.strategy == "auto") {
    // Rules that compare whole gradients need every peer's whole vector: allgather. So do the
    // attacks that read every honest gradient. topk stays on allgather too: re-selecting the top
    // 1% of each averaged slice cost 1.7 accuracy points (docs/strategies.md); the other codecs
    // kept their accuracy with half the bytes.
    options.strategy =
        codec.id != "topk" && config.size >= 3 && (*rule)->coordinatewise() && !omniscient_attack
            ? "reduce-scatter-average"
            : "allgather-average";
  }
  if (omniscient_attack && options.strategy != "allgather-average") {
    return InvalidArgument(
        "--attack {} reads the round's honest gradients before the attacker sends, which only "
        "--strategy allgather-average (or auto) allows, not {}",
        options.attack, options.strategy);
  }
  if (options.strategy == "reduce-scatter-average" && !(*rule)->coordinatewise()) {
    return InvalidArgument(
        "--aggregation {} compares whole gradients, but --strategy reduce-scatter-average "
        "combines them slice by slice; use --strategy allgather-average (or auto)",
        options.aggregation);
  }
  // Checked here so a bad --attack fails before any data is loaded; RunPeer builds it again.
  P2P_RETURN_IF_ERROR(
      Attack::Make(options.attack, options.attack_ranks, config.rank, config.size, config.seed)
          .status());
  // topk's momentum correction moves SGD's momentum in front of the compression (docs/codecs.md):
  // the optimizer must not apply it a second time.
  config.ResolveDefaults();
  const bool codec_momentum = codec.params.contains("momentum") && codec.params.at("momentum") > 0;
  if (codec_momentum && (config.optimizer.name != "sgd" || config.optimizer.momentum != 0)) {
    return InvalidArgument(
        "--compression {} applies the momentum before compressing; run it with --optimizer sgd "
        "--momentum 0",
        options.compression);
  }
  if (codec.id == "topk" && !codec_momentum && config.optimizer.momentum > 0) {
    spdlog::warn(
        "topk with the optimizer's momentum converges slowly; for SGD with momentum M prefer "
        "--momentum 0 --compression topk:momentum=M (momentum correction, docs/codecs.md)");
  }
  if (!(options.peer_timeout_s > 0)) {
    return InvalidArgument("--peer-timeout must be positive seconds");
  }
  if (options.heartbeat_s > 0 && !(options.heartbeat_s * 2 <= options.peer_timeout_s)) {
    return InvalidArgument(
        "--heartbeat {} s is too slow for --peer-timeout {} s: a live peer would be suspected "
        "after missing one heartbeat; use a timeout of at least twice the heartbeat (default 1 "
        "and 10)",
        options.heartbeat_s, options.peer_timeout_s);
  }
  static const std::regex kRunId("[A-Za-z0-9._-]{1,128}");
  if (options.run_id.empty()) {
    if (options.transport == "amqp") {
      return InvalidArgument(
          "--transport amqp needs --run-id NAME (the same on every peer, unique per run: it "
          "names the run's exchange and queues on the broker)");
    }
    options.run_id = "p2ptrain";
  }
  if (!std::regex_match(options.run_id, kRunId)) {
    return InvalidArgument("--run-id '{}' must be 1-128 characters of A-Z a-z 0-9 . _ -",
                           options.run_id);
  }
  P2P_RETURN_IF_ERROR(CheckJoinFlags(options));
  P2P_RETURN_IF_ERROR(FinishTrainFlags(config));
  P2P_RETURN_IF_ERROR(FinishStoreFlags(config, options));
  return CheckSecurityFlags(options);
}

Status HandleStopSignals() { return InstallStopSignals(kStopGrace); }

int RunExitCode(const Status& status, const TrainConfig& config) {
  const int sig = StopSignal();
  if (status.ok() || sig == 0) return ExitCodeFor(status);
  spdlog::error("{}", status.message());
  if (!config.checkpoint_dir.empty()) {
    spdlog::info("the last completed epoch's checkpoint is in {}; continue with --resume",
                 config.checkpoint_dir);
  }
  return ExitCodeForSignal(sig);
}

Status RunPeer(TrainConfig config, const PeerOptions& options) {
  P2P_RETURN_IF_ERROR(HandleStopSignals());
  ml::SetThreads(config.threads);
  spdlog::info("peer {} of {} (run '{}', {} transport): {} on {}, batch {}, sync every {}",
               config.rank, config.size, options.run_id, options.transport, config.model.name,
               config.data.name, config.batch_size, options.sync_every);
  P2P_ASSIGN_OR_RETURN(auto security, PeerSecurity::Load(options, config.rank, config.size));
  config.evaluation_slice = true;  // the epoch hook sums every peer's slice
  P2P_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(config));
  // SPIRT's functions use its database: AttachSpirt attaches them once it is connected.
  if (options.strategy != "spirt") P2P_RETURN_IF_ERROR(AttachOffload(*trainer, config.offload));
  P2P_ASSIGN_OR_RETURN(const auto attack, Attack::Make(options.attack, options.attack_ranks,
                                                       config.rank, config.size, config.seed));
  if (attack) {
    spdlog::warn("rank {} is a Byzantine attacker for this experiment: --attack {}", config.rank,
                 attack->spec());
    attack->Poison(trainer->mutable_train_data());
  }
  const auto connect_deadline = DeadlineIn(Millis(options.connect_timeout_s));
  std::optional<broker::RegistrationSigner> signer;
  if (security) signer = MakeRegistrationSigner(security->key());
  P2P_ASSIGN_OR_RETURN(auto transport,
                       CreateTransport(options, config.rank, config.size, connect_deadline,
                                       signer ? &*signer : nullptr));
  if (Status s = transport->Connect(connect_deadline); !s.ok()) {
    return s.Annotate(fmt::format("connecting peer {} to the other {} peers over {}", config.rank,
                                  config.size - 1, options.transport));
  }
  Status trained = Train(*trainer, config, options, *transport, security.get(), attack.get());
  Status closed = transport->Close();
  if (!trained.ok()) return trained.Annotate(fmt::format("peer {}", config.rank));
  return closed;
}

}  // namespace p2p::peer
