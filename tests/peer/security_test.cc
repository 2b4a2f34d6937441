// Security end to end, with real `p2ptrain` processes: keygen, secure-by-default usage errors, a
// peer with an untrusted key refused by the others, and hostile processes injecting forged,
// tampered, replayed, unsigned and foreign gradient messages into 3-peer runs, over RabbitMQ
// (anyone with the broker's credentials can publish to a run's exchange) and over ZeroMQ (an
// on-path attacker between two peers: the mesh has no transport encryption). Such a run must end
// with parameters bit-identical to a clean run with the same seed, and the victim's metrics must
// count exactly what was injected, by reason.
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>
#include <zmq.hpp>

#include "broker/chunking.h"
#include "broker/envelope.h"
#include "crypto/keys.h"
#include "crypto/rsa.h"
#include "tests/broker/amqp_test_broker.h"
#include "tests/support/peer_files.h"
#include "tests/support/run_keys.h"
#include "tests/support/subprocess.h"

namespace p2p {
namespace {

using test::Records;

using namespace std::chrono_literals;
using test::Child;
using test::P2ptrainBin;
using test::ProcessResult;
using ::testing::HasSubstr;
using ::testing::Not;

// ------------------------------------------------------------------ keygen and flags

TEST(SecurityCliTest, KeygenWritesAKeyPairAndPrintsItsIdentity) {
  test::TempDir dir;
  const auto r =
      test::RunProcess({P2ptrainBin(), "keygen", "--out", dir.File("keys"), "--bits", "2048"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto key = crypto::LoadPrivateKey(dir.File("keys/private.pem"), std::nullopt);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  const auto pub = crypto::LoadPublicKey(dir.File("keys/public.pem"));
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();
  EXPECT_EQ(pub->fingerprint(), key->fingerprint());
  EXPECT_EQ(pub->bits(), 2048);
  EXPECT_THAT(r.out, HasSubstr("identity " + key->fingerprint().ToString() + "\n"));
  EXPECT_EQ(std::filesystem::status(dir.File("keys/private.pem")).permissions(),
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_EQ(std::filesystem::status(dir.File("keys")).permissions(),
            std::filesystem::perms::owner_all);

  const auto again = test::RunProcess({P2ptrainBin(), "keygen", "--out", dir.File("keys")});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_THAT(again.err, HasSubstr("already exists; refusing to overwrite"));
  const auto small =
      test::RunProcess({P2ptrainBin(), "keygen", "--out", dir.File("small"), "--bits", "1024"});
  EXPECT_EQ(small.exit_code, 2);
  EXPECT_THAT(small.err, HasSubstr("--bits"));
}

TEST(SecurityCliTest, AnEncryptedKeyTakesItsPassphraseFromANamedVariableOnly) {
  test::TempDir dir;
  ::setenv("P2P_TEST_KEY_PASS", "open sesame 42", 1);
  const auto made = test::RunProcess({P2ptrainBin(), "keygen", "--out", dir.File("k"), "--bits",
                                      "2048", "--key-pass-env", "P2P_TEST_KEY_PASS"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  EXPECT_THAT(made.out + made.err, Not(HasSubstr("open sesame")));
  EXPECT_THAT(test::ReadFile(dir.File("k/private.pem")), HasSubstr("ENCRYPTED PRIVATE KEY"));
  const std::vector<std::string> base = {P2ptrainBin(), "peer",
                                         "--dataset",   "synthetic",
                                         "--size",      "2",
                                         "--rank",      "0",
                                         "--peers",     "a:1,b:2",
                                         "--key",       dir.File("k/private.pem"),
                                         "--trust",     dir.File("k/public.pem")};
  // Without the variable name: a usage error that says how to pass it.
  auto no_pass = test::RunProcess(base, 1min);
  EXPECT_EQ(no_pass.exit_code, 2);
  EXPECT_THAT(no_pass.err, HasSubstr("is encrypted; pass --key-pass-env VAR"));
  // With a wrong passphrase in the variable.
  ::setenv("P2P_TEST_KEY_PASS", "wrong guess", 1);
  auto wrong_args = base;
  wrong_args.insert(wrong_args.end(), {"--key-pass-env", "P2P_TEST_KEY_PASS"});
  auto wrong = test::RunProcess(wrong_args, 1min);
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_THAT(wrong.err, HasSubstr("wrong passphrase"));
  EXPECT_THAT(wrong.err, Not(HasSubstr("wrong guess")));
  ::unsetenv("P2P_TEST_KEY_PASS");
  auto unset = test::RunProcess(wrong_args, 1min);
  EXPECT_EQ(unset.exit_code, 2);
  EXPECT_THAT(unset.err, HasSubstr("no environment variable P2P_TEST_KEY_PASS is set"));
}

TEST(SecurityCliTest, AuthenticationIsOnByDefaultAndBadIdentitiesAreUsageErrors) {
  test::TempDir dir;
  const auto& keys = test::RunKeysFor(2);
  const std::string key0 = keys.PeerFlags(0)[1], trust = keys.PeerFlags(0)[3];
  // A private key others can read.
  const std::string loose = dir.File("loose.pem");
  std::filesystem::copy_file(key0, loose);
  std::filesystem::permissions(loose, std::filesystem::perms::others_read,
                               std::filesystem::perm_options::add);
  struct Case {
    std::vector<std::string> flags;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{}, "give --key FILE (this peer's private key; create one with `p2ptrain keygen"},
      {{}, "or pass --insecure to run without authentication"},
      {{"--key", key0}, "--key needs --trust DIR"},
      {{"--trust", trust}, "--trust needs --key FILE"},
      {{"--insecure", "--key", key0}, "--insecure turns authentication off"},
      {{"--key", dir.File("nope.pem"), "--trust", trust}, "nope.pem does not exist"},
      {{"--key", loose, "--trust", trust}, "chmod 600"},
      {{"--key", trust + "/rank-0.pem", "--trust", trust}, "holds a public key"},
      {{"--key", key0, "--trust", dir.File("no-trust")}, "no-trust does not exist"},
      {{"--key", key0, "--trust", keys.dir() + "/rank-1"}, "contains a private key"},
      {{"--key", keys.PeerFlags(1)[1], "--trust", trust, "--manifest", keys.PeerFlags(0)[5]},
       "this peer's key cannot take rank 0"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {P2ptrainBin(), "peer",   "--dataset", "synthetic", "--size",
                                     "2",           "--rank", "0",         "--peers",   "a:1,b:2"};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    const auto r = test::RunProcess(argv, 1min);
    EXPECT_EQ(r.exit_code, 2) << c.expected << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.expected)) << r.err;
  }
}

TEST(SecurityCliTest, InsecureRunsSayItLoudly) {
  test::TempDir dir;
  const auto r =
      test::RunProcess({P2ptrainBin(), "peer", "--size", "1", "--rank", "0", "--insecure",
                        "--dataset", "synthetic", "--synthetic-train", "500", "--model", "logreg",
                        "--epochs", "1", "--progress", "off", "--metrics", dir.File("m.jsonl")},
                       2min);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("*** --insecure: AUTHENTICATION IS OFF"));
  const auto record = nlohmann::json::parse(test::ReadLines(dir.File("m.jsonl")).at(0));
  EXPECT_EQ(record["authenticated"], false);
}

// ------------------------------------------------------------------ real runs

std::string IpcEndpoint(const test::TempDir& dir, const std::string& name) {
  return fmt::format("ipc://{}/{}.sock", dir.path(), name);
}

// A small 3-rank run with enough rounds (94 per epoch, 3 epochs; about a second) that injected
// messages are judged long before the last epoch's metrics are written.
const std::vector<std::string> kTraining = {
    "--dataset", "synthetic", "--synthetic-train", "20000", "--model",        "mlp",
    "--hidden",  "16",        "--epochs",          "3",     "--lr",           "0.1",
    "--threads", "1",         "--progress",        "off",   "--peer-timeout", "60"};

std::vector<std::string> RankArgs(int rank, const test::TempDir& dir,
                                  const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {P2ptrainBin(), "peer",
                                   "--size",      "3",
                                   "--rank",      std::to_string(rank),
                                   "--metrics",   dir.File(fmt::format("rank-{}.jsonl", rank))};
  argv.insert(argv.end(), kTraining.begin(), kTraining.end());
  argv.insert(argv.end(), extra.begin(), extra.end());
  const auto identity = test::IdentityFlags(3, rank);
  argv.insert(argv.end(), identity.begin(), identity.end());
  return argv;
}

// Waits for the ranks; each must have exited 0 with 3 epochs. Returns the final parameter hash
// (the same on every rank) and each rank's rejected messages summed over the epochs.
struct RunOutcome {
  std::string param_hash;
  std::vector<std::map<std::string, uint64_t>> rejected;
};

RunOutcome Finish(std::vector<std::unique_ptr<Child>>& ranks, const test::TempDir& dir) {
  RunOutcome out;
  for (size_t r = 0; r < ranks.size(); ++r) {
    const ProcessResult result = ranks[r]->Wait(3min);
    EXPECT_EQ(result.exit_code, 0) << "rank " << r << ": " << result.err;
    const auto records = Records(dir, static_cast<int>(r));
    EXPECT_EQ(records.size(), 3u) << "rank " << r;
    std::map<std::string, uint64_t> rejected;
    for (const auto& record : records) {
      EXPECT_EQ(record["authenticated"], true);
      for (const auto& [reason, n] : record["rejected"].items())
        rejected[reason] += n.get<uint64_t>();
    }
    out.rejected.push_back(rejected);
    if (records.empty()) continue;
    const std::string h = records.back()["param_hash"];
    if (out.param_hash.empty()) out.param_hash = h;
    EXPECT_EQ(h, out.param_hash) << "rank " << r;
  }
  return out;
}

std::string CleanRunHash() {
  static const std::string hash = [] {
    test::TempDir dir;
    const std::string peers = fmt::format("{},{},{}", IpcEndpoint(dir, "r0"),
                                          IpcEndpoint(dir, "r1"), IpcEndpoint(dir, "r2"));
    std::vector<std::unique_ptr<Child>> ranks;
    for (int r = 0; r < 3; ++r) {
      ranks.push_back(std::make_unique<Child>(RankArgs(r, dir, {"--peers", peers})));
    }
    const RunOutcome clean = Finish(ranks, dir);
    for (const auto& rejected : clean.rejected) EXPECT_TRUE(rejected.empty());
    return clean.param_hash;
  }();
  return hash;
}

// ------------------------------------------------------------------ the attacker

// Watches rank 0's genuine messages to rank 1. At rank 0's first gradient (the earliest moment,
// so the rest of the run is the margin) it makes the hostile payloads from it and from rank 0's
// start-agreement message: envelopes claiming to be from rank 0, for rank 1.
class Attack {
 public:
  // Takes one genuine message of rank 0 (any encoded envelope); returns what to inject now.
  std::vector<broker::Bytes> OnGenuine(std::span<const std::byte> bytes) {
    auto env = broker::DecodeEnvelope(bytes);
    if (done_ || !env.ok()) return {};
    if (env->type == broker::MessageType::kParamsHash) first_ = *env;
    // allgather-average broadcasts GRADIENTs; reduce-scatter-average (the default for these
    // uncompressed 3-peer runs) sends those point to point and broadcasts AGGREGATEs.
    const bool averaging =
        env->type == broker::MessageType::kGradient || env->type == broker::MessageType::kAggregate;
    if (!averaging || !first_) return {};
    done_ = true;
    return Payloads(*first_, *env);
  }
  bool done() const { return done_; }

  // What rank 1 must reject, by reason.
  static std::map<std::string, uint64_t> Expected() {
    return {{"replay", 2},   {"tampered_body", 1}, {"bad_mac", 2},
            {"unsigned", 1}, {"wrong_run", 1},     {"unexpected_sender", 1}};
  }

 private:
  std::vector<broker::Bytes> Payloads(const broker::Envelope& older,
                                      const broker::Envelope& latest) const {
    std::vector<broker::Envelope> out;
    out.push_back(older);                // replayed
    out.push_back(latest);               // replayed (the original is already on its way)
    broker::Envelope tampered = latest;  // genuine header and MAC, one gradient value changed
    tampered.body.back() ^= std::byte{0x40};
    out.push_back(tampered);
    broker::Envelope moved = latest;  // the genuine MAC on an altered header
    moved.step += 1;
    out.push_back(moved);
    // A gradient signed with the attacker's own key (trusted by nobody).
    broker::Envelope forged = latest;
    forged.step += 1;
    forged.seq += 1000;
    for (auto& b : forged.body) b = std::byte{0x7f};
    const broker::Bytes signed_bytes = broker::SigningBytes(forged);
    const crypto::ByteSpan pieces[] = {signed_bytes};
    forged.signature = crypto::SignPss(own_key_, pieces).value();
    out.push_back(forged);
    broker::Envelope unsigned_env = latest;
    unsigned_env.step += 2;
    unsigned_env.signature.clear();
    out.push_back(unsigned_env);
    broker::Envelope foreign = latest;  // another run's message
    foreign.run_id = "intruder-run";
    out.push_back(foreign);
    broker::Envelope stranger = latest;  // a rank that does not exist
    stranger.sender = 7;
    out.push_back(stranger);
    std::vector<broker::Bytes> bytes;
    for (const auto& env : out) bytes.push_back(broker::EncodeEnvelope(env).value());
    return bytes;
  }

  // The attacker's own identity, made before the run (trusted by nobody).
  const crypto::PrivateKey own_key_ = crypto::PrivateKey::Generate(crypto::kMinRsaBits).value();
  std::optional<broker::Envelope> first_;
  bool done_ = false;
};

void ExpectDefended(const RunOutcome& run) {
  EXPECT_EQ(run.param_hash, CleanRunHash()) << "the injected messages changed the training";
  ASSERT_EQ(run.rejected.size(), 3u);
  EXPECT_TRUE(run.rejected[0].empty());
  EXPECT_EQ(run.rejected[1], Attack::Expected());
  EXPECT_TRUE(run.rejected[2].empty());
}

// ------------------------------------------------------------------ over RabbitMQ

// Anyone with the broker's credentials: binds its own queue to the run's exchange to read rank
// 0's broadcasts, and publishes to rank 1's routing key.
class AmqpIntruder {
 public:
  AmqpIntruder(const std::string& url_text, const std::string& run_id)
      : exchange_("p2p." + run_id) {
    auto url = broker::ParseAmqpUrl(url_text);
    EXPECT_TRUE(url.ok());
    conn_ = amqp_new_connection();
    amqp_socket_t* socket = amqp_tcp_socket_new(conn_);
    EXPECT_EQ(amqp_socket_open(socket, url->host.c_str(), url->port), AMQP_STATUS_OK);
    Check(amqp_login(conn_, url->vhost.c_str(), 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
                     url->user.c_str(), url->password.c_str()),
          "login");
    amqp_channel_open(conn_, 1);
    Check(amqp_get_rpc_reply(conn_), "channel");
    // The run's exchange, declared exactly as the peers declare it (whoever comes first).
    amqp_exchange_declare(conn_, 1, amqp_cstring_bytes(exchange_.c_str()),
                          amqp_cstring_bytes("direct"), 0, 0, 1, 0, amqp_empty_table);
    Check(amqp_get_rpc_reply(conn_), "exchange");
    amqp_queue_declare_ok_t* q =
        amqp_queue_declare(conn_, 1, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
    Check(amqp_get_rpc_reply(conn_), "queue");
    queue_ = std::string(static_cast<char*>(q->queue.bytes), q->queue.len);
    amqp_queue_bind(conn_, 1, amqp_cstring_bytes(queue_.c_str()),
                    amqp_cstring_bytes(exchange_.c_str()), amqp_cstring_bytes("bcast.0"),
                    amqp_empty_table);
    Check(amqp_get_rpc_reply(conn_), "bind");
    amqp_basic_consume(conn_, 1, amqp_cstring_bytes(queue_.c_str()), amqp_empty_bytes, 0, 1, 1,
                       amqp_empty_table);
    Check(amqp_get_rpc_reply(conn_), "consume");
  }
  ~AmqpIntruder() { amqp_destroy_connection(conn_); }

  // Reads rank 0's broadcasts until the attack is done (or the deadline); returns injections.
  // Rank 0 (process `rank0_pid`) is paused while the injections are published: a run this small
  // is faster than any attacker, and this way they reach rank 1's queue ahead of rank 0's next
  // gradient, which rank 1 needs to go on, so it judges them early in the run (in the metrics).
  int Run(Attack& attack, int rank0_pid, broker::Deadline deadline) {
    broker::Reassembler reassembler;
    int injected = 0;
    while (!attack.done() && broker::Clock::now() < deadline) {
      amqp_envelope_t envelope;
      amqp_maybe_release_buffers(conn_);
      timeval tv{1, 0};  // wakes up to check the deadline
      const amqp_rpc_reply_t r = amqp_consume_message(conn_, &envelope, &tv, 0);
      if (r.reply_type != AMQP_RESPONSE_NORMAL) continue;
      const std::span<const std::byte> body(
          static_cast<const std::byte*>(envelope.message.body.bytes), envelope.message.body.len);
      auto chunk = broker::DecodeChunk(body, uint64_t{1} << 30);
      if (chunk.ok() && chunk->header.kind == broker::FrameKind::kData) {
        auto whole = reassembler.Add(*chunk);
        if (whole.ok() && whole->has_value()) {
          const auto hostile = attack.OnGenuine((*whole)->payload);
          if (!hostile.empty()) ::kill(rank0_pid, SIGSTOP);
          for (const auto& payload : hostile) {
            Publish(payload);
            ++injected;
          }
          if (!hostile.empty()) ::kill(rank0_pid, SIGCONT);
        }
      }
      amqp_destroy_envelope(&envelope);
    }
    return injected;
  }

 private:
  void Publish(const broker::Bytes& payload) {
    broker::ChunkHeader h;
    h.kind = broker::FrameKind::kData;
    h.from_rank = 0;  // claims to be rank 0
    h.incarnation = 0x5eed5eed5eedull;
    h.seq = ++seq_;
    for (const auto& part : broker::EncodeChunks(h, payload, 1 << 20)) {
      amqp_bytes_t bytes{part.size(), const_cast<std::byte*>(part.data())};
      EXPECT_EQ(amqp_basic_publish(conn_, 1, amqp_cstring_bytes(exchange_.c_str()),
                                   amqp_cstring_bytes("rank.1"), 0, 0, nullptr, bytes),
                AMQP_STATUS_OK);
    }
  }
  static void Check(amqp_rpc_reply_t r, const char* what) {
    EXPECT_EQ(r.reply_type, AMQP_RESPONSE_NORMAL) << what;
  }

  amqp_connection_state_t conn_;
  std::string exchange_, queue_;
  uint64_t seq_ = 0;
};

TEST(SecurityRunTest, InjectionsThroughRabbitMqAreRejectedAndChangeNothing) {
  const auto& broker = broker::amqp_test::Broker();
  ASSERT_TRUE(broker.error.empty()) << broker.error;
  const std::string clean = CleanRunHash();
  test::TempDir dir;
  const std::string run_id = broker::amqp_test::UniqueRunId("hostile");
  AmqpIntruder intruder(broker.url, run_id);  // listening before the run starts
  Attack attack;
  std::vector<std::unique_ptr<Child>> ranks;
  for (int r = 0; r < 3; ++r) {
    ranks.push_back(std::make_unique<Child>(
        RankArgs(r, dir, {"--transport", "amqp", "--broker", broker.url, "--run-id", run_id})));
  }
  const int injected = intruder.Run(attack, ranks[0]->pid(), broker::DeadlineIn(2min));
  EXPECT_EQ(injected, 8);
  ExpectDefended(Finish(ranks, dir));
}

// ------------------------------------------------------------------ over ZeroMQ

// An on-path attacker in front of rank 1: ranks 0 and 2 reach "rank 1" at the attacker's
// endpoint, which relays every frame to the real rank 1 (with the senders' routing ids, so the
// mesh's HELLO handshake succeeds) and adds its own frames as "r0".
class ZmqMitm {
 public:
  ZmqMitm(std::string front_endpoint, std::string rank1_endpoint)
      : thread_(
            [this, f = std::move(front_endpoint), b = std::move(rank1_endpoint)] { Relay(f, b); }) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return bound_; });
  }
  ~ZmqMitm() {
    stop_ = true;
    {
      zmq::socket_t stop(ctx_, zmq::socket_type::pair);
      stop.connect("inproc://mitm-stop");
      stop.send(zmq::str_buffer("stop"), zmq::send_flags::none);
      thread_.join();
    }
  }
  int injected() const { return injected_; }

 private:
  void Relay(const std::string& front_endpoint, const std::string& rank1_endpoint) {
    zmq::socket_t stop(ctx_, zmq::socket_type::pair);
    stop.bind("inproc://mitm-stop");
    zmq::socket_t front(ctx_, zmq::socket_type::router);
    front.bind(front_endpoint);
    std::map<std::string, zmq::socket_t> back;
    for (const char* id : {"r0", "r2"}) {
      zmq::socket_t& d = back[id] = zmq::socket_t(ctx_, zmq::socket_type::dealer);
      d.set(zmq::sockopt::routing_id, id);
      d.set(zmq::sockopt::linger, 0);
      d.connect(rank1_endpoint);
    }
    front.set(zmq::sockopt::linger, 0);
    {
      std::lock_guard lock(mu_);
      bound_ = true;
    }
    cv_.notify_all();
    broker::Reassembler reassembler;
    Attack attack;
    uint64_t message_id = 0xa77ac0000000ull;
    std::map<std::string, std::string> front_ids;  // "r0" -> rank 0's DEALER's routing id
    while (!stop_) {
      zmq::pollitem_t items[] = {{stop.handle(), 0, ZMQ_POLLIN, 0},
                                 {front.handle(), 0, ZMQ_POLLIN, 0},
                                 {back["r0"].handle(), 0, ZMQ_POLLIN, 0},
                                 {back["r2"].handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 4, std::chrono::milliseconds(-1));
      if (items[0].revents & ZMQ_POLLIN) break;
      if (items[1].revents & ZMQ_POLLIN) {  // ranks 0/2 -> rank 1
        zmq::message_t id, payload;
        (void)front.recv(id);
        (void)front.recv(payload);
        // "r0-<nonce>" -> "r0": the rank the sender's routing id claims.
        const std::string full_id = id.to_string();
        const std::string who = full_id.substr(0, full_id.find('-'));
        if (!back.contains(who)) continue;
        front_ids[who] = full_id;
        const auto* data = static_cast<const std::byte*>(payload.data());
        const broker::Bytes frame(data, data + payload.size());  // send() empties `payload`
        (void)back[who].send(payload, zmq::send_flags::none);    // the original goes first
        if (who != "r0") continue;
        auto chunk = broker::DecodeChunk(frame, uint64_t{256} << 20);
        if (!chunk.ok()) continue;
        auto whole = reassembler.Add(0, *chunk);
        if (!whole.ok() || !whole->has_value()) continue;
        for (const auto& hostile : attack.OnGenuine((*whole)->payload)) {
          const broker::ChunkHeader forged{
              .from_rank = 0, .incarnation = 0xa77ac, .seq = ++message_id};
          for (const auto& part :
               broker::EncodeChunks(forged, hostile, (1 << 20) + broker::kChunkHeaderBytes)) {
            (void)back["r0"].send(zmq::buffer(part.data(), part.size()), zmq::send_flags::none);
          }
          ++injected_;
        }
      }
      for (int i : {2, 3}) {  // rank 1's HELLO_ACKs back to their DEALERs
        if (!(items[i].revents & ZMQ_POLLIN)) continue;
        const char* who = i == 2 ? "r0" : "r2";
        zmq::message_t payload;
        (void)back[who].recv(payload);
        (void)front.send(zmq::buffer(std::string_view(front_ids[who])), zmq::send_flags::sndmore);
        (void)front.send(payload, zmq::send_flags::none);
      }
    }
  }

  zmq::context_t ctx_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool bound_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<int> injected_{0};
  std::thread thread_;
};

TEST(SecurityRunTest, InjectionsOnTheZeroMqPathAreRejectedAndChangeNothing) {
  const std::string clean = CleanRunHash();
  test::TempDir dir;
  const std::string r0 = IpcEndpoint(dir, "r0"), r1 = IpcEndpoint(dir, "r1"),
                    r2 = IpcEndpoint(dir, "r2"), mitm = IpcEndpoint(dir, "mitm");
  std::vector<std::unique_ptr<Child>> ranks;
  {
    ZmqMitm attacker(mitm, r1);
    // Ranks 0 and 2 reach rank 1 through the attacker; rank 1 binds its real endpoint.
    const std::string routed = fmt::format("{},{},{}", r0, mitm, r2);
    ranks.push_back(std::make_unique<Child>(RankArgs(0, dir, {"--peers", routed})));
    ranks.push_back(std::make_unique<Child>(
        RankArgs(1, dir, {"--peers", fmt::format("{},{},{}", r0, r1, r2)})));
    ranks.push_back(std::make_unique<Child>(RankArgs(2, dir, {"--peers", routed})));
    const RunOutcome run = Finish(ranks, dir);
    EXPECT_EQ(attacker.injected(), 8);
    ExpectDefended(run);
  }
}

// ------------------------------------------------------------------ refused identities

TEST(SecurityRunTest, APeerWithAnUntrustedKeyIsRefusedWithTheReason) {
  test::TempDir dir;
  const std::string peers = fmt::format("{},{}", IpcEndpoint(dir, "r0"), IpcEndpoint(dir, "r1"));
  const auto& run_keys = test::RunKeysFor(2);
  const auto& stranger = test::RunKeysFor(3);  // its rank-1 key is not in run_keys' trust dir
  const std::vector<std::string> common = {P2ptrainBin(),
                                           "peer",
                                           "--size",
                                           "2",
                                           "--dataset",
                                           "synthetic",
                                           "--synthetic-train",
                                           "1000",
                                           "--model",
                                           "logreg",
                                           "--epochs",
                                           "1",
                                           "--threads",
                                           "1",
                                           "--progress",
                                           "off",
                                           "--connect-timeout",
                                           "3",
                                           "--peers",
                                           peers,
                                           "--trust",
                                           run_keys.dir() + "/trust"};
  auto rank0 = common;
  rank0.insert(rank0.end(), {"--rank", "0", "--key", run_keys.PeerFlags(0)[1]});
  auto rank1 = common;
  rank1.insert(rank1.end(), {"--rank", "1", "--key", stranger.PeerFlags(1)[1]});
  Child c0(rank0), c1(rank1);
  const auto r0 = c0.Wait(1min), r1 = c1.Wait(1min);
  EXPECT_EQ(r0.exit_code, 1);
  EXPECT_THAT(r0.err, HasSubstr("dropped a message (untrusted_key)"));
  EXPECT_THAT(r0.err, HasSubstr("rank(s) 1 did not prove their identity"));
  EXPECT_THAT(r0.err,
              HasSubstr(fmt::format("key {} is not in the trust store",
                                    crypto::LoadPrivateKey(stranger.PeerFlags(1)[1], std::nullopt)
                                        ->fingerprint()
                                        .ToString())));
  EXPECT_EQ(r1.exit_code, 1);
  EXPECT_THAT(r1.err, HasSubstr("rank 0 refused our JOIN"));
  EXPECT_THAT(r1.err, HasSubstr("it refused us"));
}

}  // namespace
}  // namespace p2p
