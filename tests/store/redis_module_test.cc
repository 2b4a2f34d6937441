// p2ptrain_redis.so inside a real redis-server: results bitwise equal to the in-process kernels
// (sync/rules' MeanRule, ml::Optimizer), and every bad call answered with an error that names the
// problem while the server keeps answering and nothing wrong is stored.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "ml/optimizer.h"
#include "store/blob.h"
#include "sync/rules/mean.h"
#include "tests/store/redis_server.h"

namespace p2p::store {
namespace {

using test::RedisServer;

std::vector<float> RandomFloats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

class RedisModuleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.ready()) << server_.log();
    Result<RedisClient> c = server_.Connect();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_.emplace(std::move(*c));
  }
  RedisClient& db() { return *client_; }
  // Runs a command that must fail; returns its message. Checks the server still answers.
  std::string Error(std::initializer_list<std::string_view> args) {
    Result<Reply> r = db().Command(args);
    EXPECT_FALSE(r.ok()) << *args.begin() << " unexpectedly succeeded";
    EXPECT_TRUE(db().Ping().ok()) << "server stopped answering after " << *args.begin();
    return r.ok() ? "" : r.status().message();
  }

  RedisServer server_;
  std::optional<RedisClient> client_;
};

std::vector<float> InProcessMean(const std::vector<std::vector<float>>& grads,
                                 const std::vector<uint64_t>& samples) {
  std::vector<sync::rules::Input> inputs;
  for (size_t i = 0; i < grads.size(); ++i) inputs.push_back({grads[i], samples[i]});
  std::vector<float> out(grads[0].size());
  EXPECT_TRUE(sync::rules::MeanRule().Aggregate(inputs, out).ok());
  return out;
}

// Sizes: a tiny blob (Redis keeps it misaligned: the module's copy path), one that is not a
// multiple of the module's chunk, and one over several chunks (in place).
constexpr size_t kSizes[] = {5, 16385, 100003};

TEST_F(RedisModuleTest, AvgIsBitwiseTheSampleWeightedMeanOfSyncRules) {
  for (size_t n : kSizes) {
    std::vector<std::vector<float>> g = {RandomFloats(n, 1), RandomFloats(n, 2),
                                         RandomFloats(n, 3)};
    for (size_t i = 0; i < g.size(); ++i) {
      ASSERT_TRUE(db().SetBlob("g" + std::to_string(i), g[i]).ok());
    }
    ASSERT_TRUE(db().Command({"P2P.AVG", "avg", "g0", "g1", "g2"}).ok());
    EXPECT_TRUE(SameBits(db().GetBlob("avg").value(), InProcessMean(g, {1, 1, 1}))) << n;

    Result<Reply> r =
        db().Command({"P2P.AVG", "wavg", "g0", "g1", "g2", "WEIGHTS", "64", "0", "37"});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->integer, static_cast<long long>(n));
    EXPECT_TRUE(SameBits(db().GetBlob("wavg").value(), InProcessMean(g, {64, 0, 37}))) << n;

    // dst may be one of the sources.
    ASSERT_TRUE(db().Command({"P2P.AVG", "g1", "g0", "g1", "WEIGHTS", "3", "5"}).ok());
    EXPECT_TRUE(SameBits(db().GetBlob("g1").value(), InProcessMean({g[0], g[1]}, {3, 5}))) << n;
  }
}

TEST_F(RedisModuleTest, LavgAveragesTheBlobsPushedOnAList) {
  for (size_t n : kSizes) {
    std::vector<std::vector<float>> g;
    ASSERT_TRUE(db().Command({"DEL", "grads"}).ok());
    for (uint32_t i = 0; i < 4; ++i) {
      g.push_back(RandomFloats(n, 10 + i));
      ASSERT_TRUE(db().Command({"RPUSH", "grads", EncodeBlob(g.back())}).ok());
    }
    ASSERT_TRUE(db().Command({"P2P.LAVG", "avg", "grads"}).ok());
    EXPECT_TRUE(SameBits(db().GetBlob("avg").value(), InProcessMean(g, {1, 1, 1, 1}))) << n;
    ASSERT_TRUE(db().Command({"P2P.LAVG", "avg", "grads", "WEIGHTS", "64", "64", "64", "17"}).ok());
    EXPECT_TRUE(SameBits(db().GetBlob("avg").value(), InProcessMean(g, {64, 64, 64, 17}))) << n;
  }
}

struct OptCase {
  ml::OptimizerOptions options;
  std::vector<std::string> args;  // P2P.UPDATE's optimizer arguments
};

// The shortest decimal that round-trips the float, as a caller must send it.
std::string Dec(float x) { return fmt::format("{}", x); }

TEST_F(RedisModuleTest, UpdateIsBitwiseMlOptimizerStepOverSeveralSteps) {
  const std::vector<OptCase> cases = {
      {{.name = "sgd", .lr = 0.02f}, {"OPT", "sgd", "LR", Dec(0.02f)}},
      {{.name = "sgd", .lr = 0.02f, .momentum = 0.9f},
       {"OPT", "sgd", "LR", Dec(0.02f), "MOMENTUM", Dec(0.9f)}},
      {{.name = "sgd", .lr = 0.05f, .momentum = 0.5f, .nesterov = true, .weight_decay = 0.01f},
       {"OPT", "sgd", "LR", Dec(0.05f), "MOMENTUM", Dec(0.5f), "NESTEROV", "WD", Dec(0.01f)}},
      {{.name = "adam", .lr = 0.001f}, {"OPT", "adam", "LR", Dec(0.001f)}},
      {{.name = "adam",
        .lr = 0.003f,
        .weight_decay = 0.01f,
        .beta1 = 0.8f,
        .beta2 = 0.99f,
        .eps = 1e-6f},
       {"OPT", "adam", "LR", Dec(0.003f), "WD", Dec(0.01f), "BETAS", Dec(0.8f), Dec(0.99f), "EPS",
        Dec(1e-6f)}},
      {{.name = "adamw", .lr = 0.001f, .weight_decay = 0.1f},
       {"OPT", "adamw", "LR", Dec(0.001f), "WD", Dec(0.1f)}},
  };
  for (size_t n : kSizes) {
    for (const OptCase& c : cases) {
      std::vector<float> params = RandomFloats(n, 99);
      auto opt = std::move(ml::Optimizer::Create(c.options).value());
      ASSERT_TRUE(db().SetBlob("params", params).ok());
      ASSERT_TRUE(db().Command({"DEL", "state"}).ok());
      for (int step = 1; step <= 3; ++step) {
        const std::vector<float> grad = RandomFloats(n, 1000 + step);
        opt->Step(params, grad);
        ASSERT_TRUE(db().SetBlob("grad", grad).ok());
        std::vector<std::string> args = {"P2P.UPDATE", "params", "grad", "STATE", "state"};
        args.insert(args.end(), c.args.begin(), c.args.end());
        args.insert(args.end(), {"STEP", std::to_string(step)});
        std::vector<std::string_view> views(args.begin(), args.end());
        Result<Reply> r = db().Command(views);
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        EXPECT_EQ(r->integer, step);
      }
      EXPECT_TRUE(SameBits(db().GetBlob("params").value(), params))
          << c.options.name << " n=" << n << " momentum=" << c.options.momentum;
      const auto buffers = opt->SaveState().buffers;
      if (!buffers.empty()) {
        std::vector<float> flat;
        for (const auto& b : buffers) flat.insert(flat.end(), b.begin(), b.end());
        EXPECT_TRUE(SameBits(db().GetBlob("state").value(), flat)) << c.options.name;
      }
    }
  }
}

bool Has(const std::string& message, std::string_view words) {
  return message.find(words) != std::string::npos;
}

TEST_F(RedisModuleTest, BadAvgCallsAreErrorsAndStoreNothing) {
  ASSERT_TRUE(db().SetBlob("a", std::vector<float>{1, 2, 3}).ok());
  ASSERT_TRUE(db().SetBlob("b", std::vector<float>{4, 5, 6}).ok());
  ASSERT_TRUE(db().SetBlob("short", std::vector<float>{1, 2}).ok());
  ASSERT_TRUE(db().SetBlob("nan", std::vector<float>{1, std::nanf(""), 3}).ok());
  ASSERT_TRUE(db().Command({"SET", "text", "hello"}).ok());
  ASSERT_TRUE(db().Command({"RPUSH", "list", "x"}).ok());
  ASSERT_TRUE(db().SetBlob("keep", std::vector<float>{7}).ok());

  EXPECT_TRUE(Has(Error({"P2P.AVG", "d"}), "wrong number of arguments"));
  EXPECT_TRUE(Has(Error({"P2P.AVG", "d", "a", "missing"}), "source 'missing' does not exist"));
  EXPECT_TRUE(Has(Error({"P2P.AVG", "d", "a", "short"}), "'short' holds 2 floats but 'a' holds 3"));
  EXPECT_TRUE(Has(Error({"P2P.AVG", "d", "a", "text"}), "'text'"));
  EXPECT_TRUE(Has(Error({"P2P.AVG", "d", "a", "text"}), "not a p2ptrain blob"));
  EXPECT_TRUE(Has(Error({"P2P.AVG", "d", "a", "list"}), "holds a list"));
  EXPECT_TRUE(Has(Error({"P2P.AVG", "d", "a", "b", "WEIGHTS", "1"}), "2 inputs but 1 WEIGHTS"));
  EXPECT_TRUE(Has(Error({"P2P.AVG", "d", "a", "b", "WEIGHTS", "1", "x"}), "weight 'x'"));
  EXPECT_TRUE(Has(Error({"P2P.AVG", "d", "a", "b", "WEIGHTS", "1", "-2"}), "weight '-2'"));
  EXPECT_TRUE(Has(Error({"P2P.AVG", "d", "a", "b", "WEIGHTS", "0", "0"}), "every weight is 0"));
  EXPECT_TRUE(Has(Error({"P2P.AVG", "d", "WEIGHTS", "1"}), "no source key"));
  EXPECT_TRUE(Has(Error({"P2P.AVG", "list", "a", "b"}), "destination 'list' holds a list"));
  EXPECT_TRUE(Has(Error({"P2P.AVG", "d", "a", "nan"}), "not finite at index 1"));
  // Nothing of a failed average stays behind; an aliased dst keeps its value.
  EXPECT_EQ(db().Command({"EXISTS", "d"}).value().integer, 0);
  EXPECT_TRUE(Has(Error({"P2P.AVG", "keep", "keep", "short"}), "holds"));
  EXPECT_TRUE(Has(Error({"P2P.AVG", "a", "a", "nan"}), "nothing stored"));
  EXPECT_EQ(db().GetBlob("a").value(), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(db().GetBlob("keep").value(), std::vector<float>{7});

  EXPECT_TRUE(Has(Error({"P2P.LAVG", "d"}), "wrong number of arguments"));
  EXPECT_TRUE(Has(Error({"P2P.LAVG", "d", "nolist"}), "list 'nolist' does not exist"));
  EXPECT_TRUE(Has(Error({"P2P.LAVG", "d", "a"}), "'a' is not a list"));
  EXPECT_TRUE(Has(Error({"P2P.LAVG", "d", "list"}), "element 0 of 'list'"));
  EXPECT_TRUE(Has(Error({"P2P.LAVG", "d", "list", "extra"}), "usage"));
  ASSERT_TRUE(db().Command({"RPUSH", "mixed", EncodeBlob(std::vector<float>{1, 2, 3}),
                            EncodeBlob(std::vector<float>{1, 2})})
                  .ok());
  EXPECT_TRUE(Has(Error({"P2P.LAVG", "d", "mixed"}), "element 1 of 'mixed' holds 2 floats"));
  ASSERT_TRUE(db().Command({"RPUSH", "nans", EncodeBlob(std::vector<float>{1, 2, 3}),
                            EncodeBlob(std::vector<float>{1, 2, NAN})})
                  .ok());
  EXPECT_TRUE(Has(Error({"P2P.LAVG", "d", "nans"}), "not finite at index 2"));
  EXPECT_EQ(db().Command({"EXISTS", "d"}).value().integer, 0);
}

TEST_F(RedisModuleTest, BadUpdateCallsAreErrorsAndApplyNothing) {
  const std::vector<float> p = {1, 2, 3};
  ASSERT_TRUE(db().SetBlob("p", p).ok());
  ASSERT_TRUE(db().SetBlob("g", std::vector<float>{0.5f, 0.5f, 0.5f}).ok());
  ASSERT_TRUE(db().SetBlob("g2", std::vector<float>{0.5f, 0.5f}).ok());
  ASSERT_TRUE(db().SetBlob("ginf", std::vector<float>{0.5f, INFINITY, 0.5f}).ok());
  auto update = [&](std::initializer_list<std::string_view> tail, std::string_view params = "p",
                    std::string_view grad = "g") {
    std::vector<std::string_view> args = {"P2P.UPDATE", params, grad, "STATE", "s"};
    args.insert(args.end(), tail);
    Result<Reply> r = db().Command(args);
    EXPECT_FALSE(r.ok());
    EXPECT_TRUE(db().Ping().ok());
    return r.ok() ? std::string() : r.status().message();
  };
  EXPECT_TRUE(Has(Error({"P2P.UPDATE", "p", "g"}), "wrong number of arguments"));
  EXPECT_TRUE(Has(update({"OPT", "sgd", "LR"}), "wrong number of arguments"));
  EXPECT_TRUE(Has(update({"OPT", "sgd", "LR", "0.1", "MOMENTUM"}), "MOMENTUM needs 1 value"));
  EXPECT_TRUE(Has(update({"OPT", "rmsprop", "LR", "0.1"}), "unknown OPT 'rmsprop'"));
  EXPECT_TRUE(Has(update({"OPT", "sgd", "LR", "fast"}), "LR 'fast' is not a finite number"));
  EXPECT_TRUE(Has(update({"OPT", "sgd", "LR", "nan"}), "LR 'nan'"));
  EXPECT_TRUE(Has(update({"OPT", "sgd", "LR", "-1"}), "LR must be > 0"));
  EXPECT_TRUE(Has(update({"OPT", "sgd", "LR", "0.1", "NESTEROV"}), "NESTEROV requires MOMENTUM"));
  EXPECT_TRUE(Has(update({"OPT", "sgd", "LR", "0.1", "BOGUS", "1"}), "unknown option 'BOGUS'"));
  EXPECT_TRUE(Has(update({"OPT", "sgd", "LR", "0.1", "LR", "0.2"}), "LR given twice"));
  EXPECT_TRUE(Has(update({"OPT", "adam", "LR", "0.1", "MOMENTUM", "0.9"}), "no MOMENTUM"));
  EXPECT_TRUE(
      Has(update({"OPT", "adam", "LR", "0.1", "BETAS", "1", "0.9"}), "BETAS b1 must be in"));
  EXPECT_TRUE(Has(update({"OPT", "adam", "LR", "0.1", "STEP", "0"}), "STEP '0'"));
  EXPECT_TRUE(Has(update({"OPT", "adam", "LR", "0.1", "STEP", "2"}), "does not exist"));
  EXPECT_TRUE(
      Has(update({"OPT", "sgd", "LR", "0.1"}, "p", "g2"), "holds 3 floats but grad 'g2' holds 2"));
  EXPECT_TRUE(Has(update({"OPT", "sgd", "LR", "0.1"}, "nop", "g"), "params 'nop' does not exist"));
  EXPECT_TRUE(Has(update({"OPT", "sgd", "LR", "0.1"}, "p", "nog"), "grad 'nog' does not exist"));
  EXPECT_TRUE(Has(update({"OPT", "sgd", "LR", "0.1"}, "p", "p"), "three different keys"));
  EXPECT_TRUE(Has(update({"OPT", "adam", "LR", "0.1"}, "p", "ginf"), "NaN or infinity at index 1"));
  // Nothing was applied and no state was created by any failed call.
  EXPECT_EQ(db().GetBlob("p").value(), p);
  EXPECT_EQ(db().Command({"EXISTS", "s"}).value().integer, 0);
  // Once the state exists, STEP is required.
  ASSERT_TRUE(
      db().Command({"P2P.UPDATE", "p", "g", "STATE", "s", "OPT", "adam", "LR", "0.1"}).ok());
  const std::vector<float> after = db().GetBlob("p").value();
  EXPECT_TRUE(Has(update({"OPT", "adam", "LR", "0.1"}), "STEP t is required"));
  ASSERT_TRUE(db().Command({"SET", "s", "garbage"}).ok());
  EXPECT_TRUE(Has(update({"OPT", "adam", "LR", "0.1", "STEP", "2"}), "not a p2ptrain blob"));
  EXPECT_EQ(db().GetBlob("p").value(), after);
}

}  // namespace
}  // namespace p2p::store
