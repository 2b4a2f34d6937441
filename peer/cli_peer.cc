// `p2ptrain peer` (one peer of a run) and `p2ptrain broker` (the ZeroMQ rendezvous service).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <memory>

#include "broker/envelope.h"
#include "broker/rendezvous.h"
#include "crypto/trust_store.h"
#include "peer/cli.h"
#include "peer/cli_checks.h"
#include "peer/peer_run.h"
#include "peer/peer_security.h"
#include "peer/rendezvous_auth.h"
#include "peer/shard_check.h"
#include "peer/spirt_peer.h"
#include "sync/codecs/codec.h"
#include "sync/comparative_strategies.h"
#include "sync/mlless.h"
#include "sync/rules/rule.h"
#include "sync/staleness.h"

namespace p2p::peer {
namespace {

void AddConnectionFlags(CLI::App& cmd, PeerOptions& o) {
  cmd.add_option("--transport", o.transport,
                 "How peers talk: zmq (brokerless ZeroMQ mesh) or amqp (through RabbitMQ)")
      ->check(CLI::IsMember({"zmq", "amqp"}));
  cmd.add_option("--broker", o.broker_url, "amqp: the broker, amqp[s]://user:pass@host:port/vhost");
  cmd.add_option("--tls-ca", o.tls_ca, "amqps: CA certificate file that signed the broker's");
  cmd.add_flag("--tls-insecure", o.tls_insecure,
               "amqps: do NOT verify the broker's certificate (testing only)");
  cmd.add_option("--peers", o.peers,
                 "zmq: every rank's endpoint in rank order, host:port,... (or ipc://path,...)");
  cmd.add_option("--rendezvous", o.rendezvous,
                 "zmq: HOST:PORT of a `p2ptrain broker` to learn the other peers from");
  cmd.add_option("--bind", o.bind, "zmq + rendezvous: endpoint to bind (port 0 = any free port)");
  cmd.add_option("--advertise", o.advertise,
                 "zmq + rendezvous: host name or address the other peers reach this one at "
                 "(default: this host's name)");
  cmd.add_option("--run-id", o.run_id,
                 "Name of the run, the same on every peer (required for amqp; default for zmq: "
                 "p2ptrain)");
}

// What the strategy factory would refuse once the peers are connected, checked before that so a
// bad flag fails at once. A view change redoes the current round with the survivors, but
// --staleness has S rounds of the old members' gradients in flight that no one can redo
// (sync/staleness.h).
Status CheckStrategyFlags(const PeerOptions& o) {
  P2P_RETURN_IF_ERROR(sync::CheckStaleness(o.strategy, o.staleness));
  if (o.staleness > 0 && o.heartbeat_s > 0 && o.on_failure == "continue") {
    return InvalidArgument(
        "--staleness {} cannot survive a view change (rounds in flight would be lost); run it "
        "with --on-failure stop (or --heartbeat 0)",
        o.staleness);
  }
  if (o.strategy != "mlless") return Status::Ok();
  P2P_ASSIGN_OR_RETURN(const auto codec, sync::codecs::ParseCodecSpec(o.compression));
  P2P_ASSIGN_OR_RETURN(const auto rule, sync::rules::MakeRule(o.aggregation));
  return sync::CheckMlless(o.significance, codec, rule->name());
}

void AddSyncFlags(CLI::App& cmd, PeerOptions& o) {
  cmd.add_option("--sync-every", o.sync_every,
                 "Minibatches per gradient exchange, or 'epoch': average the whole shard's "
                 "gradients and exchange once per epoch (the study's scheme)");
  cmd.add_option("--strategy", o.strategy,
                 "How gradients are combined: allgather-average (every peer sends its whole "
                 "gradient to all), reduce-scatter-average (each peer reduces one slice: "
                 "2(W-1)/W instead of W-1 gradients sent per peer; uncompressed, allgather's "
                 "average bit for bit; with a codec each coordinate is quantised twice, "
                 "docs/codecs.md), or auto: "
                 "reduce-scatter-average for 3+ peers unless the codec is topk or the "
                 "--aggregation rule compares whole gradients, else allgather-average. The "
                 "comparative study's systems "
                 "(docs/strategies.md): allreduce-master, scatter-reduce, hierarchical:shards=M, "
                 "k-reduce:k=K; spirt: a Redis database per peer averages and updates the model "
                 "(needs --store-peers; docs/spirt.md)")
      ->check([](const std::string& name) {
        if (name == "auto" || name == "spirt") return std::string();
        const Status s = sync::CheckStrategyName(name);
        return s.ok() ? std::string() : s.message();
      });
  cmd.add_option("--significance", o.significance,
                 "--strategy mlless: a coordinate is published once |lr x accumulated gradient / "
                 "parameter| exceeds V / sqrt(round + 1) (MLLess's filter; 0.01 = 1 %, 0 = "
                 "every non-zero coordinate every round; docs/strategies.md)")
      ->transform(NonNegativeReal(1e6));
  cmd.add_option("--staleness", o.staleness,
                 "Bounded staleness: round r applies the average of round r-S's gradients, so a "
                 "peer computes up to S rounds ahead of the exchange (0 = synchronous; 1 or 2; "
                 "--strategy allgather-average and --on-failure stop only; docs/strategies.md)")
      ->transform(IntIn(0, 2));
  cmd.add_option("--compression", o.compression,
                 "Gradient codec on the wire: NAME[:key=value,...] with NAME one of none, fp16, "
                 "qsgd, qsgd-elias, qsgd-linf, uint8, topk (e.g. qsgd:bits=4,bucket=512, "
                 "topk:ratio=0.01; docs/codecs.md). Without a value, or 'true': qsgd. Every peer "
                 "must use the same")
      ->expected(0, 1)
      // No default string: CLI11 would use it as the value of a bare --compression.
      ->default_str("")
      ->option_text("NAME[:PARAMS]=none");
  cmd.add_option("--qsgd-bits", o.qsgd_bits,
                 "qsgd codecs: bits per level, s = 2^bits - 1 levels (same as the spec's bits=)")
      ->transform(IntIn(1, 16))
      ->default_str("8");
  cmd.add_option("--qsgd-bucket", o.qsgd_bucket,
                 "qsgd codecs: values per norm, a multiple of 64; 0 = one norm per payload: the "
                 "whole gradient, or a slice on reduce-scatter (same as the spec's bucket=)")
      ->transform(NonNegativeInt())
      ->default_str("0");
  cmd.add_option("--topk-ratio", o.topk_ratio,
                 "topk: share of the coordinates sent each round (same as the spec's ratio=)")
      ->transform(RealIn(0, 1, /*lo_inclusive=*/false))
      ->default_str("0.01");
  cmd.add_option("--aggregation", o.aggregation,
                 "How the peers' gradients are combined: mean (sample-weighted), median, "
                 "trimmed-mean:beta=B, krum:f=F, multi-krum:f=F,m=M, bulyan:f=F, "
                 "centered-clip:tau=T,iters=I or geomedian:tol=T,iters=I (docs/robustness.md). "
                 "Every peer must use the same")
      ->option_text("RULE[:PARAMS]=mean");
  cmd.add_option("--attack", o.attack,
                 "EXPERIMENTS ONLY: ranks in --attack-ranks send corrupted gradients: "
                 "signflip:scale=10, gaussian:std=100, noise:std=S, labelflip, zero, nan, and "
                 "alie:z=Z, ipm:eps=E (these read the round's honest gradients first; "
                 "allgather-average only) (docs/robustness.md)");
  cmd.add_option("--attack-ranks", o.attack_ranks,
                 "EXPERIMENTS ONLY: the attacking ranks, e.g. 1,3 (the others are honest)");
  cmd.add_option("--peer-timeout", o.peer_timeout_s,
                 "Seconds a peer may stay silent (no gradient, no heartbeat) before the others "
                 "suspect it has died (docs/membership.md)")
      ->transform(PositiveReal())
      ->default_str("10");
  cmd.add_option("--heartbeat", o.heartbeat_s,
                 "Seconds between heartbeats to the other peers, sent by a thread also while "
                 "computing; 0 = none (then no failure detection: a round waits --peer-timeout "
                 "for a silent peer and fails)")
      ->check(CLI::NonNegativeNumber)
      ->default_str("1");
  cmd.add_option("--round-timeout", o.round_timeout_s,
                 "With heartbeats: seconds one exchange may wait for peers that are alive but "
                 "whose message does not come (after asking them to send it again) before the "
                 "run fails naming them; raise it only if a single minibatch or evaluation "
                 "takes longer")
      ->transform(PositiveReal())
      ->default_str("1800");
  cmd.add_option("--on-failure", o.on_failure,
                 "When a peer dies: continue = the survivors agree on a new view (a strict "
                 "majority is needed) and train on; stop = the run fails")
      ->check(CLI::IsMember({"continue", "stop"}))
      ->default_str("continue");
  cmd.add_option("--connect-timeout", o.connect_timeout_s,
                 "Seconds to wait for every peer to connect, authenticate and agree on the "
                 "configuration at start")
      ->transform(PositiveReal())
      ->default_str("120");
  cmd.add_flag("--join", o.join,
               "Rejoin a running run as this rank restarted (what launch --max-restarts runs): "
               "handshake with the members again, wait for them to admit this rank at the end "
               "of an epoch, take the parameters, optimizer and epoch from them (checked against "
               "the parameter hash every member reports) and train on (docs/membership.md)");
  cmd.add_option("--join-timeout", o.join_timeout_s,
                 "--join: seconds to wait for the members to admit this rank (they do at the end "
                 "of their current epoch)")
      ->transform(PositiveReal())
      ->default_str("600");
}

void AddBrokerFlags(CLI::App& cmd, broker::RendezvousOptions& o, std::string& trust) {
  broker::rendezvous::Limits& l = o.limits;
  cmd.add_option("--bind", o.bind, "ZeroMQ endpoint to listen on");
  cmd.add_option("--max-size", o.max_size, "Largest run size accepted")
      ->transform(PositiveInt())
      ->check(CLI::Range(1, broker::kMaxRank + 1));
  cmd.add_option("--trust", trust,
                 "Accept only registrations signed by one of these public keys (a directory of "
                 "PEM files or one PEM file, as for `p2ptrain peer --trust`)");
  cmd.add_option("--max-runs", l.max_runs, "Runs held at once")->check(CLI::PositiveNumber);
  cmd.add_option("--max-registrations", l.max_registrations,
                 "Registrations held at once, all runs together")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--max-per-source", l.max_per_source,
                 "Registrations held at once from one IP address (raise it when many peers "
                 "share one address, e.g. behind NAT)")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--rate", l.requests_per_second, "Requests per second per IP address")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--burst", l.burst, "Requests one IP address may send at once")
      ->check(CLI::Range(1.0, 1e9));
  cmd.add_option_function<int64_t>(
         "--max-clock-skew", [&l](int64_t s) { l.max_clock_skew = std::chrono::seconds(s); },
         "--trust: seconds a registration's signing time may differ from this host's clock")
      ->check(CLI::Range(int64_t{1}, int64_t{86400}))
      ->default_str(std::to_string(l.max_clock_skew.count()));
  cmd.add_option_function<int64_t>(
         "--run-ttl", [&l](int64_t s) { l.run_ttl = std::chrono::seconds(s); },
         "Seconds an incomplete run is kept after its last registration")
      ->check(CLI::Range(int64_t{1}, int64_t{86400}))
      ->default_str(std::to_string(l.run_ttl.count()));
}

// Loads --trust (registrations must then be signed by one of its keys) and sizes the table of
// rate-limited addresses to the registrations it must be able to hold.
Status FinishBrokerFlags(const std::string& path, broker::RendezvousOptions& o) {
  o.limits.max_sources = std::max(o.limits.max_sources, 2 * o.limits.max_registrations);
  if (path.empty()) return Status::Ok();
  auto trust = crypto::TrustStore::Load(path);
  if (!trust.ok()) {
    const StatusCode code = trust.status().code() == StatusCode::kNotFound
                                ? StatusCode::kInvalidArgument
                                : trust.status().code();
    return Status(code, trust.status().message()).Annotate("--trust");
  }
  spdlog::info("rendezvous: {} trusted key(s) from {}", trust->size(), path);
  o.verifier =
      MakeRegistrationVerifier(std::make_shared<const crypto::TrustStore>(std::move(*trust)));
  return Status::Ok();
}

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

}  // namespace

Action AddPeerCommand(CLI::App& app) {
  auto config = std::make_shared<TrainConfig>();
  auto options = std::make_shared<PeerOptions>();
  CLI::App* cmd = app.add_subcommand(
      "peer",
      "Run one peer of a data-parallel run: train on shard --rank of --size and average "
      "gradients with the other peers every --sync-every minibatches.\n"
      "Example (two hosts over ZeroMQ):\n"
      "  hostA$ p2ptrain peer --size 2 --rank 0 --peers hostA:5555,hostB:5555\n"
      "  hostB$ p2ptrain peer --size 2 --rank 1 --peers hostA:5555,hostB:5555\n"
      "Example (RabbitMQ):\n"
      "  p2ptrain peer --size 4 --rank R --transport amqp --broker amqp://u:p@mq:5672/ "
      "--run-id exp1\n"
      "Every peer also needs --key (its private key) and --trust (the run's public keys), made "
      "with `p2ptrain keygen`; --insecure runs without authentication.\n"
      "Local runs: `p2ptrain launch` starts all ranks for you (and makes their keys).");
  AddTrainFlags(*cmd, *config);
  AddShardFlags(*cmd, *config);
  AddConnectionFlags(*cmd, *options);
  AddSyncFlags(*cmd, *options);
  AddStoreFlags(*cmd, *options);
  AddSecurityFlags(*cmd, *options);
  AddOffloadFlags(*cmd, config->offload);
  return [config, options] {
    Status s = FinishPeerFlags(*config, *options);
    if (s.ok()) s = CheckStrategyFlags(*options);
    if (s.ok()) s = CheckShardForRun(*config, /*check_rank=*/true);
    if (s.ok()) s = RunPeer(*config, *options);
    return RunExitCode(s, *config);
  };
}

Action AddBrokerCommand(CLI::App& app) {
  auto options = std::make_shared<broker::RendezvousOptions>();
  auto trust_path = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "broker",
      "Run the rendezvous service ZeroMQ peers register with (`p2ptrain peer --rendezvous "
      "HOST:PORT`), so a multi-host ZeroMQ run needs no hand-written --peers list. Gradients do "
      "not pass through it. Without --trust, registrations are UNAUTHENTICATED: anyone who can "
      "reach it can take a free rank of a run (docs/security.md). Stops on SIGINT/SIGTERM.");
  AddBrokerFlags(*cmd, *options, *trust_path);
  return [options, trust_path] {
    if (Status s = FinishBrokerFlags(*trust_path, *options); !s.ok()) return ExitCodeFor(s);
    std::signal(SIGINT, OnSignal);
    std::signal(SIGTERM, OnSignal);
    options->log = [](const std::string& line) { spdlog::info("{}", line); };
    const bool trusted = static_cast<bool>(options->verifier);
    options->on_bound = [trusted](const std::string& endpoint) {
      spdlog::info("rendezvous listening on {}; registrations {}", endpoint,
                   trusted ? "must be signed by a key in --trust"
                           : "are UNAUTHENTICATED (anyone who can reach this port can take a "
                             "free rank; use --trust DIR)");
    };
    return ExitCodeFor(broker::RunRendezvous(*options, g_stop));
  };
}

}  // namespace p2p::peer
