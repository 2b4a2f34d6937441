// `p2ptrain launch`: start W local peers (`p2ptrain peer`, one per rank) and supervise them as one
// job through RunGroup (peer/launcher.h).
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <thread>

#include "peer/cli.h"
#include "peer/cli_checks.h"
#include "peer/launch_redis.h"
#include "peer/launcher.h"
#include "peer/peer_security.h"
#include "peer/shard_check.h"

namespace p2p::peer {
namespace {

constexpr int kMaxSize = 64;
constexpr std::string_view kDefaultBroker = "amqp://guest:guest@127.0.0.1:5672/";

struct LaunchArgs {
  int size = 0;
  std::string transport = "zmq";
  std::string broker{kDefaultBroker};
  std::string run_id;
  std::string metrics_dir;
  int zmq_base_port = 0;  // 0: ipc:// endpoints in a private temp directory
  std::string progress = "auto";
  double grace_s = 5;
  int max_restarts = 0;  // per rank; restarted peers rejoin (--join)
  std::vector<std::string> peer_args;
  CLI::Option* broker_flag = nullptr;
  std::string store;         // "redis": one redis-server per peer (peer/launch_redis.h)
  std::string redis_module;  // p2ptrain_redis.so (FindRedisModule)
};

// Peer flags the launcher sets itself, and what to do instead.
struct ReservedFlag {
  std::string_view flag, instead;
};
constexpr ReservedFlag kReservedFlags[] = {
    {"--size", "pass --size to launch"},
    {"--rank", "launch gives every peer its rank"},
    {"--run-id", "pass --run-id to launch"},
    {"--peers", "launch picks the endpoints (--zmq-base-port P for tcp://127.0.0.1:P+rank)"},
    {"--metrics", "pass --metrics-dir DIR to launch: rank r writes DIR/rank-r.jsonl"},
    {"--transport", "pass --transport to launch"},
    {"--broker", "pass --broker to launch"},
    {"--progress", "launch shows one combined line (set it with launch --progress)"},
    {"--join", "launch adds it to a restarted peer (launch --max-restarts N)"},
};

Status CheckPeerArgs(const std::vector<std::string>& peer_args) {
  for (const std::string& arg : peer_args) {
    const std::string_view name = std::string_view(arg).substr(0, arg.find('='));
    for (const ReservedFlag& reserved : kReservedFlags) {
      if (name == reserved.flag) {
        return InvalidArgument(
            "{} after `--` is set by launch for every peer; {} (see `p2ptrain launch --help`)",
            reserved.flag, reserved.instead);
      }
    }
  }
  return Status::Ok();
}

bool SurvivesFailures(const std::vector<std::string>& peer_args);
std::string PeerFlagValue(const std::vector<std::string>& args, const std::string& name,
                          const std::string& fallback);

// A restarted peer rejoins the run (`peer --join`): only peers that survive failures evict it and
// admit it back, and only over ZeroMQ so far.
Status CheckRestarts(const LaunchArgs& a) {
  if (a.max_restarts == 0) return Status::Ok();
  if (!SurvivesFailures(a.peer_args)) {
    return InvalidArgument(
        "--max-restarts {} needs peers that survive failures (--on-failure continue and "
        "--heartbeat > 0, the defaults): a restarted peer rejoins a run that went on without it",
        a.max_restarts);
  }
  if (a.transport != "zmq" || PeerFlagValue(a.peer_args, "--strategy", "auto") == "spirt" ||
      !a.store.empty()) {
    return InvalidArgument(
        "--max-restarts is implemented for --transport zmq without --strategy spirt (a restarted "
        "peer cannot rejoin over RabbitMQ or with SPIRT's databases yet)");
  }
  return Status::Ok();
}

Status CheckArgs(const LaunchArgs& a) {
  if (a.transport != "amqp" && a.broker_flag->count() > 0) {
    return InvalidArgument("--broker is for --transport amqp");
  }
  if (a.transport != "zmq" && a.zmq_base_port != 0) {
    return InvalidArgument("--zmq-base-port is for --transport zmq");
  }
  if (a.zmq_base_port != 0 && a.zmq_base_port + a.size - 1 > 65535) {
    return InvalidArgument("--zmq-base-port {} + {} ranks goes past port 65535", a.zmq_base_port,
                           a.size);
  }
  const bool id_ok = std::all_of(a.run_id.begin(), a.run_id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
  if (a.run_id.empty() || !id_ok || a.run_id.front() == '.') {
    return InvalidArgument("--run-id '{}' must be letters, digits, '-', '_' or '.'", a.run_id);
  }
  P2P_RETURN_IF_ERROR(CheckPeerArgs(a.peer_args));
  return CheckRestarts(a);
}

// The value of `flag` in the peer flags ("--flag V" or "--flag=V"), or nothing.
std::optional<std::string> FlagValue(const std::vector<std::string>& args, std::string_view flag) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (arg == flag && i + 1 < args.size()) return args[i + 1];
    if (arg.starts_with(flag) && arg.size() > flag.size() && arg[flag.size()] == '=') {
      return std::string(arg.substr(flag.size() + 1));
    }
  }
  return std::nullopt;
}

std::string ForRank(std::string arg, int rank) {
  for (size_t at; (at = arg.find("{rank}")) != std::string::npos;) {
    arg.replace(at, 6, std::to_string(rank));
  }
  return arg;
}

// Refuses a --shard that would give some rank another rank's samples before any peer starts
// (each peer checks its own shard too; this names the mistake once instead of once per peer).
// Dataset and seed are left to the peers, which know the effective --dataset/--data-seed.
Status CheckLaunchShards(const LaunchArgs& a) {
  const std::optional<std::string> shard = FlagValue(a.peer_args, "--shard");
  if (!shard || a.size == 1) return Status::Ok();
  if (shard->find("{rank}") == std::string::npos) {
    auto info = ml::ReadShardInfo(*shard);
    const std::string holds =
        info.ok() ? fmt::format(" (it holds rank {}'s samples of {})", info->rank, info->size) : "";
    return InvalidArgument(
        "--shard {} after `--` has no {{rank}} placeholder, so all {} peers would train on the "
        "same samples{}; give each rank its own shard: --shard {}",
        *shard, a.size, holds, WithRankPlaceholder(*shard));
  }
  for (int r = 0; r < a.size; ++r) {
    const std::string path = ForRank(*shard, r);
    P2P_ASSIGN_OR_RETURN(const ml::ShardInfo info, ml::ReadShardInfo(path));
    P2P_RETURN_IF_ERROR(CheckShardInfo(path, info, {.rank = r, .size = a.size}));
  }
  return Status::Ok();
}

std::string DefaultRunId() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &utc);
  return fmt::format("launch-{}-{}", getpid(), stamp);
}

// A fresh private directory for the ranks' ipc:// sockets, removed with them.
class SocketDir {
 public:
  static Result<std::unique_ptr<SocketDir>> Create() {
    std::string tmpl = "/tmp/p2ptrain-launch-XXXXXX";  // short: socket paths have ~107 bytes
    if (mkdtemp(tmpl.data()) == nullptr) return IoError("mkdtemp {}: {}", tmpl, strerror(errno));
    return std::unique_ptr<SocketDir>(new SocketDir(tmpl));
  }
  ~SocketDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  explicit SocketDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

std::string PeerList(const LaunchArgs& a, const SocketDir* sockets) {
  std::string csv;
  for (int r = 0; r < a.size; ++r) {
    csv += r > 0 ? "," : "";
    csv += sockets != nullptr ? fmt::format("ipc://{}/rank-{}.sock", sockets->path(), r)
                              : fmt::format("tcp://127.0.0.1:{}", a.zmq_base_port + r);
  }
  return csv;
}

std::string MetricsFile(const LaunchArgs& a, int rank) {
  return (std::filesystem::path(a.metrics_dir) / fmt::format("rank-{}.jsonl", rank)).string();
}

bool HasFlag(const std::vector<std::string>& args, std::string_view flag) {
  return std::any_of(args.begin(), args.end(), [&](const std::string& arg) {
    return std::string_view(arg).substr(0, arg.find('=')) == flag;
  });
}

// Rank r's command line: the peer flags ("{rank}" replaced by r) and the launcher's own.
std::vector<std::string> PeerArgv(const LaunchArgs& a, const std::string& exe,
                                  const std::string& transport_flag,
                                  const std::string& transport_value, int r) {
  std::vector<std::string> argv = {exe, "peer"};
  for (const std::string& arg : a.peer_args) argv.push_back(ForRank(arg, r));
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (!HasFlag(a.peer_args, "--threads")) {
    argv.insert(argv.end(), {"--threads", std::to_string(std::max(1, cores / a.size))});
  }
  argv.insert(argv.end(), {"--size", std::to_string(a.size), "--rank", std::to_string(r),
                           "--run-id", a.run_id, "--transport", a.transport, "--progress", "json",
                           "--metrics", MetricsFile(a, r), transport_flag, transport_value});
  return argv;
}

// Where the peers meet, for the log (without the broker's credentials).
std::string MeetingPlace(const LaunchArgs& a, const SocketDir* sockets) {
  if (a.transport == "amqp") {
    const size_t scheme = a.broker.find("://"), at = a.broker.rfind('@');
    const bool userinfo = scheme != std::string::npos && at != std::string::npos && at > scheme;
    return "amqp via " +
           (userinfo ? a.broker.substr(0, scheme + 3) + a.broker.substr(at + 1) : a.broker);
  }
  if (sockets != nullptr) return fmt::format("zmq over ipc sockets in {}", sockets->path());
  return fmt::format("zmq on tcp://127.0.0.1:{}..{}", a.zmq_base_port,
                     a.zmq_base_port + a.size - 1);
}

LaunchOptions::Display DisplayFor(const std::string& progress) {
  if (progress == "bar") return LaunchOptions::Display::kTerminal;
  if (progress == "lines") return LaunchOptions::Display::kLines;
  if (progress == "off") return LaunchOptions::Display::kOff;
  return LaunchOptions::Display::kAuto;
}

void PrintResults(const LaunchArgs& a, const LaunchResult& result) {
  std::vector<size_t> lost;
  for (size_t r = 0; r < result.ranks.size(); ++r) {
    if (result.ranks[r].signal != 0 || result.ranks[r].exit_code != 0) lost.push_back(r);
  }
  const std::string finished =
      lost.empty()
          ? fmt::format("{} ranks finished", a.size)
          : fmt::format("{} of {} ranks finished", a.size - static_cast<int>(lost.size()), a.size);
  fmt::print("launch: {} in {:.2f} s{}; metrics in {}\n", finished, result.wall_s,
             lost.empty()
                 ? ""
                 : fmt::format(" (the others went on without rank(s) {})", fmt::join(lost, ", ")),
             (std::filesystem::path(a.metrics_dir) / "rank-<r>.jsonl").string());
  for (size_t r = 0; r < result.ranks.size(); ++r) {
    const RankOutcome& o = result.ranks[r];
    if (o.stdout_dropped > 0) {
      fmt::print("[rank {}] ({} earlier lines not shown)\n", r, o.stdout_dropped);
    }
    for (const std::string& line : o.stdout_lines) fmt::print("[rank {}] {}\n", r, line);
  }
  std::fflush(stdout);
}

// The value the peer flags give `name` ("--x v" or "--x=v"), or `fallback`.
std::string PeerFlagValue(const std::vector<std::string>& args, const std::string& name,
                          const std::string& fallback) {
  std::string value = fallback;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == name && i + 1 < args.size()) value = args[i + 1];
    if (args[i].rfind(name + "=", 0) == 0) value = args[i].substr(name.size() + 1);
  }
  return value;
}

// Whether the peers keep training when one dies (--on-failure continue with heartbeats on).
bool SurvivesFailures(const std::vector<std::string>& peer_args) {
  const std::string heartbeat = PeerFlagValue(peer_args, "--heartbeat", "1");
  const bool no_heartbeat = heartbeat.find_first_not_of("0.") == std::string::npos;
  return PeerFlagValue(peer_args, "--on-failure", "continue") == "continue" && !no_heartbeat;
}

// --store redis: a redis-server per rank, and the flags that point each peer at them.
Result<std::unique_ptr<LaunchedRedis>> StartRedis(const LaunchArgs& a, LaunchSpec& spec) {
  for (std::string_view flag : {"--store", "--store-peers", "--store-password-file"}) {
    if (HasFlag(a.peer_args, flag)) {
      return InvalidArgument(
          "{} after `--` conflicts with launch --store redis, which starts "
          "the databases and points every peer at its own",
          flag);
    }
  }
  P2P_ASSIGN_OR_RETURN(const std::string module, FindRedisModule(a.redis_module));
  P2P_ASSIGN_OR_RETURN(auto redis, LaunchedRedis::Start(a.size, module));
  const bool strategy = HasFlag(a.peer_args, "--strategy");
  for (auto& argv : spec.argv_per_rank) {
    argv.insert(argv.end(), {"--store-peers", redis->directory_file()});
    if (!strategy) argv.insert(argv.end(), {"--strategy", "spirt"});
  }
  spdlog::info("started {} redis-servers (module {}) in {} (stopped when launch exits)", a.size,
               module, redis->dir());
  return redis;
}

Status RunLaunch(LaunchArgs& a) {
  if (a.run_id.empty()) a.run_id = DefaultRunId();
  if (a.metrics_dir.empty()) a.metrics_dir = (std::filesystem::path("runs") / a.run_id).string();
  P2P_RETURN_IF_ERROR(CheckArgs(a));
  P2P_RETURN_IF_ERROR(CheckLaunchShards(a));
  std::error_code ec;
  std::filesystem::create_directories(a.metrics_dir, ec);
  if (ec) return IoError("creating --metrics-dir {}: {}", a.metrics_dir, ec.message());
  std::error_code exe_ec;
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe", exe_ec).string();
  if (exe_ec) return IoError("finding this executable: {}", exe_ec.message());

  std::unique_ptr<SocketDir> sockets;
  if (a.transport == "zmq" && a.zmq_base_port == 0) {
    P2P_ASSIGN_OR_RETURN(sockets, SocketDir::Create());
  }
  const bool zmq = a.transport == "zmq";
  const std::string flag = zmq ? "--peers" : "--broker";
  const std::string value = zmq ? PeerList(a, sockets.get()) : a.broker;
  LaunchSpec spec;
  // Secure by default: without identities in the peer flags, every rank gets a fresh key.
  std::unique_ptr<RunKeys> keys;
  if (NeedsRunKeys(a.peer_args)) {
    P2P_ASSIGN_OR_RETURN(keys, RunKeys::Create(a.size, kRunKeyBits));
  }
  for (int r = 0; r < a.size; ++r) {
    spec.argv_per_rank.push_back(PeerArgv(a, exe, flag, value, r));
    if (keys) {
      for (std::string& f : keys->PeerFlags(r)) spec.argv_per_rank.back().push_back(std::move(f));
    }
    // Same rank, same key, same endpoints: the restarted peer asks the members to take it back.
    spec.restart_argv_per_rank.push_back(spec.argv_per_rank.back());
    spec.restart_argv_per_rank.back().push_back("--join");
  }
  std::unique_ptr<LaunchedRedis> redis;
  if (a.store == "redis") {
    P2P_ASSIGN_OR_RETURN(redis, StartRedis(a, spec));
  }
  if (keys) {
    spdlog::info("generated {} RSA-{} identities for this run in {} (deleted when launch exits)",
                 a.size, kRunKeyBits, keys->dir());
  }
  spdlog::info("launching {} peers (run {}, {}); metrics in {}", a.size, a.run_id,
               MeetingPlace(a, sockets.get()), a.metrics_dir);
  spdlog::debug("rank 0: {}", fmt::join(spec.argv_per_rank[0], " "));

  LaunchOptions options;
  options.display = DisplayFor(a.progress);
  options.grace = std::chrono::milliseconds(static_cast<int64_t>(a.grace_s * 1000));
  options.forward_stdout = false;  // results are printed at the end, in rank order
  // Peers that survive failures (the default) go on while a strict majority lives.
  // SPIRT peers stop on a lost peer (no view change for the databases yet).
  const bool spirt = redis || PeerFlagValue(a.peer_args, "--strategy", "auto") == "spirt";
  options.tolerated_failures = SurvivesFailures(a.peer_args) && !spirt ? (a.size - 1) / 2 : 0;
  options.max_restarts = static_cast<size_t>(a.max_restarts);
  P2P_ASSIGN_OR_RETURN(LaunchResult result, RunGroup(spec, options));
  PrintResults(a, result);
  return Status::Ok();
}

constexpr const char* kDescription =
    "Start --size peers on this machine (`p2ptrain peer`, one process per rank) and supervise them "
    "as one job. Every flag after `--` goes to every peer (training flags: see `p2ptrain peer "
    "--help`); \"{rank}\" in them becomes the rank, e.g. --shard shards/rank-{rank}.shard.\n"
    "Launch sets --size, --rank, --run-id, --transport, --progress json, --metrics "
    "DIR/rank-<r>.jsonl and the endpoints itself (and --threads cores/size unless given). With "
    "zmq (the default) peers talk over ipc:// sockets in a private temp directory: no service "
    "needed. With amqp they meet on the RabbitMQ --broker.\n"
    "Identity: unless the peer flags bring --key/--trust/--manifest or --insecure, launch "
    "generates a fresh RSA key per rank, a trust directory and a manifest in a private temp "
    "directory (deleted at exit), so the run is authenticated with no extra flags.\n"
    "Output: each line prefixed \"[rank r]\"; one combined progress line; at the end a summary "
    "and each rank's result lines. If a peer dies, the others agree on a new view and train on "
    "without it as long as a strict majority lives (--on-failure continue, the default; "
    "docs/membership.md); otherwise (or with --on-failure stop) the others are stopped (SIGTERM, "
    "SIGKILL after --grace) and launch exits non-zero with that peer's error and last output "
    "lines. With --max-restarts N a peer that dies is started again (same rank, same key) up to N "
    "times and rejoins: the others evict it, then admit it back at the end of an epoch with the "
    "run's parameters and optimizer state (docs/membership.md).\n"
    "Ctrl-C stops all peers.\n"
    "Example:\n"
    "  p2ptrain launch --size 4 -- --dataset fashion-mnist --model mlp --epochs 3\n"
    "  p2ptrain launch --size 2 --transport amqp --run-id exp1 -- --model lenet5";

}  // namespace

Action AddLaunchCommand(CLI::App& app) {
  auto args = std::make_shared<LaunchArgs>();
  CLI::App* cmd = app.add_subcommand("launch", kDescription);
  cmd->add_option("--size", args->size, "Number of peers to start (1..64)")
      ->required()
      ->transform(IntIn(1, kMaxSize));
  cmd->add_option("--transport", args->transport,
                  "zmq (ZeroMQ mesh over local sockets, needs nothing installed) or amqp")
      ->check(CLI::IsMember({"zmq", "amqp"}));
  args->broker_flag = cmd->add_option("--broker", args->broker, "amqp: the RabbitMQ broker URL");
  cmd->add_option("--run-id", args->run_id, "Name of the run (default launch-<pid>-<time>)");
  cmd->add_option("--metrics-dir", args->metrics_dir,
                  "Where rank r writes rank-r.jsonl (default runs/<run-id>/)");
  cmd->add_option("--zmq-base-port", args->zmq_base_port,
                  "zmq: use tcp://127.0.0.1:P+rank instead of ipc:// sockets")
      ->transform(IntIn(1, 65535));
  cmd->add_option("--progress", args->progress,
                  "Combined progress line: auto (redrawn on a terminal, a line every 10 s "
                  "otherwise), bar, lines, off")
      ->check(CLI::IsMember({"auto", "bar", "lines", "off"}));
  cmd->add_option("--grace", args->grace_s,
                  "Seconds the other peers get to exit after a failure before SIGKILL")
      ->transform(NonNegativeReal());
  cmd->add_option("--max-restarts", args->max_restarts,
                  "Times each peer that dies is restarted; it rejoins the run (`peer --join`, "
                  "zmq only). Default 0: a dead peer stays gone")
      ->transform(IntIn(0, 1000));
  cmd->add_option("--store", args->store,
                  "redis: start one private redis-server per peer (unix socket, random password, "
                  "no persistence, the p2ptrain module) for --strategy spirt, stopped at exit")
      ->check(CLI::IsMember({"redis"}));
  cmd->add_option("--redis-module", args->redis_module,
                  "--store redis: p2ptrain_redis.so (default $P2P_REDIS_MODULE, else the build "
                  "tree's)");
  cmd->add_option("peer-flags", args->peer_args, "Flags for every peer, after `--`");
  cmd->footer("Peer flags go after `--`: p2ptrain launch --size 4 -- --model mlp --epochs 3\n");
  // Unknown flags before `--` are collected so the error can say where peer flags go.
  cmd->allow_extras();
  return [args, cmd] {
    for (const std::string& extra : cmd->remaining()) {
      if (extra == "--") continue;  // CLI11 lists the separator itself
      return ExitCodeFor(InvalidArgument(
          "launch does not know {}; peer flags go after `--`, e.g. p2ptrain launch --size {} -- "
          "--epochs 3",
          extra, args->size));
    }
    return ExitCodeFor(RunLaunch(*args));
  };
}

}  // namespace p2p::peer
