// The SPIRT round against real redis-servers (each peer its own, with the module) and real
// mailboxes over the in-process transport: in-database and client-side rounds give bitwise the
// process's mean + optimizer step, every key has a TTL and Cleanup leaves none, and a peer whose
// database holds something other than what it announced is refused, naming it, with nothing
// applied.
#include "spirt/spirt_strategy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <thread>

#include "broker/inproc_transport.h"
#include "ml/optimizer.h"
#include "spirt/announcement.h"
#include "spirt/directory.h"
#include "spirt/keys.h"
#include "store/blob.h"
#include "sync/rules/mean.h"
#include "tests/store/redis_server.h"

namespace p2p::spirt {
namespace {

using ::testing::HasSubstr;

constexpr size_t kParams = 1003;

std::vector<float> Values(size_t n, float scale, float offset) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * std::sin(0.37f * static_cast<float>(i) + offset);
  return v;
}

uint64_t DbSize(store::RedisClient& c) { return c.Command({"DBSIZE"}).value().integer; }

struct Peers {
  explicit Peers(int size, bool in_db, ml::OptimizerOptions opt = {.name = "adam", .lr = 0.01f})
      : group(broker::MakeInProcGroup(size)) {
    for (int r = 0; r < size; ++r) {
      servers.push_back(std::make_unique<test::RedisServer>());
      EXPECT_TRUE(servers.back()->ready()) << servers.back()->log();
      databases.push_back(servers.back()->connect_options());
    }
    for (int r = 0; r < size; ++r) {
      mailboxes.push_back(std::make_unique<sync::Mailbox>(*group[static_cast<size_t>(r)],
                                                          sync::Mailbox::Options{.run_id = "t1"}));
    }
    for (int r = 0; r < size; ++r) {
      auto s = SpirtStrategy::Create(*mailboxes[static_cast<size_t>(r)], databases,
                                     {.run_id = "t1",
                                      .in_db = in_db,
                                      .peer_timeout = std::chrono::seconds(60),
                                      .optimizer = opt});
      EXPECT_TRUE(s.ok()) << s.status().ToString();
      strategies.push_back(std::move(*s));
    }
  }
  std::vector<std::unique_ptr<broker::InProcTransport>> group;
  std::vector<std::unique_ptr<test::RedisServer>> servers;
  std::vector<store::ConnectOptions> databases;
  std::vector<std::unique_ptr<sync::Mailbox>> mailboxes;
  std::vector<std::unique_ptr<SpirtStrategy>> strategies;
};

// Three rounds of `size` peers with different gradients and sample counts; returns every peer's
// parameters after each round, and checks them against the in-process mean + optimizer.
std::vector<std::vector<float>> TrainRounds(Peers& run, const ml::OptimizerOptions& opt,
                                            int rounds) {
  const size_t w = run.strategies.size();
  std::vector<std::vector<float>> params(w, Values(kParams, 0.5f, 0.f));
  std::vector<float> reference = params[0];
  auto ref_opt = ml::Optimizer::Create(opt).value();
  std::vector<std::unique_ptr<ml::Optimizer>> opts;
  for (size_t r = 0; r < w; ++r) {
    opts.push_back(ml::Optimizer::Create(opt).value());
    EXPECT_TRUE(run.strategies[r]->Init(params[r]).ok());
  }
  for (int n = 0; n < rounds; ++n) {
    std::vector<std::vector<float>> grads;
    std::vector<sync::rules::Input> inputs;
    for (size_t r = 0; r < w; ++r) {
      grads.push_back(Values(kParams, 1.f + static_cast<float>(r), static_cast<float>(n)));
    }
    for (size_t r = 0; r < w; ++r) inputs.push_back({grads[r], 10 + 7 * r});
    std::vector<float> mean(kParams);
    EXPECT_TRUE(sync::rules::MeanRule().Aggregate(inputs, mean).ok());
    ref_opt->Step(reference, mean);
    std::vector<std::thread> threads;
    std::vector<Status> status(w);
    for (size_t r = 0; r < w; ++r) {
      threads.emplace_back([&, r] {
        std::vector<float> g = grads[r];
        status[r] = run.strategies[r]->Average({.epoch = 1, .step = static_cast<uint64_t>(n)},
                                               static_cast<uint32_t>(10 + 7 * r), g);
        if (status[r].ok()) status[r] = run.strategies[r]->Update(params[r], g, *opts[r]);
      });
    }
    for (auto& t : threads) t.join();
    for (size_t r = 0; r < w; ++r) {
      if (!status[r].ok()) {
        ADD_FAILURE() << "rank " << r << ": " << status[r].ToString();
        return {};
      }
      EXPECT_EQ(0, std::memcmp(params[r].data(), reference.data(), kParams * sizeof(float)))
          << "rank " << r << " round " << n << " differs from the in-process mean + step";
      // The parameters the peer holds are its database's.
      auto db = store::RedisClient::Connect(run.databases[r]).value();
      EXPECT_EQ(db.GetBlob(RunKeys("t1").Params()).value(), params[r]);
    }
  }
  return params;
}

TEST(SpirtStrategyTest, InDatabaseRoundsAreBitwiseTheProcesssMeanAndAdamStep) {
  const ml::OptimizerOptions opt{.name = "adam", .lr = 0.01f};
  Peers run(3, /*in_db=*/true, opt);
  TrainRounds(run, opt, 4);
}

TEST(SpirtStrategyTest, InDatabaseSgdWithNesterovAndWeightDecay) {
  const ml::OptimizerOptions opt{
      .name = "sgd", .lr = 0.05f, .momentum = 0.9f, .nesterov = true, .weight_decay = 1e-4f};
  Peers run(2, /*in_db=*/true, opt);
  TrainRounds(run, opt, 3);
}

TEST(SpirtStrategyTest, ClientSideGivesTheSameBits) {
  const ml::OptimizerOptions opt{.name = "adam", .lr = 0.01f};
  Peers in_db(3, true, opt), client(3, false, opt);
  EXPECT_EQ(TrainRounds(in_db, opt, 3), TrainRounds(client, opt, 3));
}

TEST(SpirtStrategyTest, EveryKeyHasATtlAndCleanupLeavesNone) {
  const ml::OptimizerOptions opt{.name = "sgd", .lr = 0.1f, .momentum = 0.9f};
  Peers run(2, true, opt);
  TrainRounds(run, opt, 3);
  for (size_t r = 0; r < 2; ++r) {
    auto db = store::RedisClient::Connect(run.databases[r]).value();
    auto keys = db.Command({"KEYS", "*"}).value();
    // params, state and the last two rounds' own averages: older rounds are already gone.
    EXPECT_EQ(keys.elements.size(), 4u) << "rank " << r;
    for (const auto& k : keys.elements) {
      EXPECT_THAT(k.str, ::testing::StartsWith("p2p:t1:"));
      const long long ttl = db.Command({"PTTL", k.str}).value().integer;
      EXPECT_GT(ttl, 0) << k.str << " has no TTL";
    }
    auto deleted = run.strategies[r]->Cleanup();
    ASSERT_TRUE(deleted.ok()) << deleted.status().ToString();
    EXPECT_EQ(*deleted, 4u);
    EXPECT_EQ(DbSize(db), 0u) << "rank " << r;
  }
}

// Rank 1 is played by the test: its database holds one blob, its announcement describes another.
TEST(SpirtStrategyTest, AnAverageThatDoesNotMatchItsAnnouncementIsRefusedNamingThePeer) {
  for (const bool in_db : {true, false}) {
    Peers run(2, in_db);
    const std::vector<float> initial = Values(kParams, 0.5f, 0.f);
    ASSERT_TRUE(run.strategies[0]->Init(initial).ok());
    auto db1 = store::RedisClient::Connect(run.databases[1]).value();
    const std::string stored = store::EncodeBlob(Values(kParams, 2.f, 1.f));
    ASSERT_TRUE(db1.Command({"SET", RunKeys("t1").Average(0, 1), stored}).ok());
    const std::string announced = store::EncodeBlob(Values(kParams, 3.f, 1.f));
    broker::Envelope env;
    env.type = broker::MessageType::kGradient;
    env.epoch = 1;
    env.codec.id = std::string(kAnnouncementCodec);
    env.body = EncodeAnnouncement(Announce(announced, 5));
    ASSERT_TRUE(run.mailboxes[1]->Send(env).ok());
    std::vector<float> g = Values(kParams, 1.f, 0.f), params = initial;
    Status s = run.strategies[0]->Average({.epoch = 1, .step = 0}, 5, g);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr("rank 1's average p2p:t1:avg:0:1"));
    EXPECT_THAT(s.message(), HasSubstr(run.servers[1]->url()));
    EXPECT_THAT(s.message(), HasSubstr("nothing applied"));
    // Nothing reached the parameters in the database.
    auto db0 = store::RedisClient::Connect(run.databases[0]).value();
    EXPECT_EQ(db0.GetBlob(RunKeys("t1").Params()).value(), initial);
    EXPECT_EQ(db0.Command({"EXISTS", RunKeys("t1").Aggregate(0)}).value().integer, 0);
  }
}

TEST(SpirtStrategyTest, AnnouncedAverageMissingFromThePeersDatabaseIsAnError) {
  Peers run(2, true);
  ASSERT_TRUE(run.strategies[0]->Init(Values(kParams, 0.5f, 0.f)).ok());
  broker::Envelope env;
  env.type = broker::MessageType::kGradient;
  env.epoch = 1;
  env.codec.id = std::string(kAnnouncementCodec);
  env.body = EncodeAnnouncement(Announce(store::EncodeBlob(Values(kParams, 1.f, 0.f)), 5));
  ASSERT_TRUE(run.mailboxes[1]->Send(env).ok());
  std::vector<float> g = Values(kParams, 1.f, 0.f);
  Status s = run.strategies[0]->Average({.epoch = 1, .step = 0}, 5, g);
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("rank 1's announced average p2p:t1:avg:0:1 is not there"));
}

TEST(SpirtStrategyTest, DatabaseErrorsNameTheDatabase) {
  auto group = broker::MakeInProcGroup(1);
  sync::Mailbox mailbox(*group[0], {.run_id = "t1"});
  test::RedisServer plain({.load_module = false});
  ASSERT_TRUE(plain.ready()) << plain.log();
  // In-db needs the module; client-side does not.
  auto s = SpirtStrategy::Create(mailbox, {plain.connect_options()}, {.run_id = "t1"});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("module is not loaded"));
  EXPECT_THAT(s.status().message(), HasSubstr(plain.url()));
  EXPECT_TRUE(
      SpirtStrategy::Create(mailbox, {plain.connect_options()}, {.run_id = "t1", .in_db = false})
          .ok());
  // A wrong password.
  auto wrong = plain.connect_options();
  wrong.password = "not-the-password";
  s = SpirtStrategy::Create(mailbox, {wrong}, {.run_id = "t1", .in_db = false});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("authentication refused"));
  EXPECT_THAT(s.status().message(), HasSubstr(plain.url()));
  // rmsprop has no in-database update.
  test::RedisServer with_module;
  s = SpirtStrategy::Create(mailbox, {with_module.connect_options()},
                            {.run_id = "t1", .optimizer = {.name = "rmsprop"}});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("--in-db off"));
  // Unreachable.
  plain.Stop();
  s = SpirtStrategy::Create(mailbox, {plain.connect_options()}, {.run_id = "t1", .in_db = false});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kUnavailable) << s.status().ToString();
  EXPECT_THAT(s.status().message(), HasSubstr(plain.url()));
}

TEST(SpirtAnnouncementTest, RoundTripsAndRefusesMalformedBodies) {
  const Announcement a = Announce(store::EncodeBlob(Values(9, 1.f, 0.f)), 42);
  EXPECT_EQ(a.length, store::kBlobHeaderBytes + 36);
  EXPECT_EQ(DecodeAnnouncement(EncodeAnnouncement(a)).value(), a);
  broker::Bytes body = EncodeAnnouncement(a);
  body.pop_back();
  EXPECT_THAT(DecodeAnnouncement(body).status().message(), HasSubstr("47 bytes; expected 48"));
  body = EncodeAnnouncement(a);
  body[0] = std::byte{'X'};
  EXPECT_THAT(DecodeAnnouncement(body).status().message(), HasSubstr("magic"));
  Announcement huge = a;
  huge.length = uint64_t{1} << 40;
  EXPECT_THAT(DecodeAnnouncement(EncodeAnnouncement(huge)).status().message(),
              HasSubstr("blob has"));
}

TEST(SpirtDirectoryTest, ReadsEveryRankAndNamesTheBadLine) {
  test::TempDir dir;
  const std::string pw = dir.File("pw1");
  std::ofstream(pw) << "secret\n";
  const std::string path = dir.File("stores");
  std::ofstream(path) << "# rank url password-file\n"
                      << "1 unix:///tmp/x/redis.sock " << pw << "\n\n"
                      << "0 redis://127.0.0.1:6400/2\n";
  auto d = ReadStoreDirectory(path, 2);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ((*d)[0].address.port, 6400);
  EXPECT_EQ((*d)[0].address.db, 2);
  EXPECT_FALSE((*d)[0].password.has_value());
  EXPECT_EQ((*d)[1].address.path, "/tmp/x/redis.sock");
  EXPECT_EQ((*d)[1].password, "secret");
  EXPECT_THAT(ReadStoreDirectory(path, 3).status().message(),
              HasSubstr("names no database for rank 2"));
  std::ofstream(path) << "0 redis://h:1/0\n0 redis://h:2/0\n";
  EXPECT_THAT(ReadStoreDirectory(path, 2).status().message(),
              HasSubstr("line 2: rank 0 is listed twice"));
  std::ofstream(path) << "5 redis://h:1/0\n";
  EXPECT_THAT(ReadStoreDirectory(path, 2).status().message(), HasSubstr("rank '5' is not in 0..1"));
  std::ofstream(path) << "0 redis://h:1/0 " << dir.File("missing") << "\n";
  EXPECT_THAT(ReadStoreDirectory(path, 1).status().message(), HasSubstr("missing"));
  EXPECT_THAT(ReadStoreDirectory(dir.File("nope"), 1).status().message(),
              HasSubstr("cannot read the store directory"));
}

}  // namespace
}  // namespace p2p::spirt
