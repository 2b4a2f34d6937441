// SPIRT's store path on the function side: real p2ptrain-function processes read the parameters
// from a real redis-server and write their gradients into the list slots the peer made.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "serverless_offload/pool.h"
#include "store/blob.h"
#include "tests/offload/pool_fixture.h"
#include "tests/store/redis_server.h"

namespace p2p::offload {
namespace {

using ::testing::HasSubstr;

constexpr const char* kParams = "p2p:t:params";
constexpr const char* kList = "p2p:t:grads:0";

PoolOptions Options(int functions) {
  PoolOptions o;
  o.functions = functions;
  o.command = {FunctionBin()};
  o.timeout_s = 60;
  o.retries = 1;
  return o;
}

// The fixture's tasks, pointed at the database instead of the parameter snapshot.
std::vector<Task> StoreTasks(const Fixture& f, int k, const test::RedisServer& server,
                             const std::string& password) {
  std::vector<Task> tasks = f.Tasks(k);
  for (size_t i = 0; i < tasks.size(); ++i) {
    tasks[i].params_path.clear();
    tasks[i].store = Task::Store{.url = server.url(),
                                 .password = password,
                                 .params_key = kParams,
                                 .list_key = kList,
                                 .index = static_cast<uint32_t>(i)};
  }
  return tasks;
}

bool SameBits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

TEST(FunctionStoreTest, FunctionsWriteTheirGradientsIntoTheirSlotsInTaskOrder) {
  test::RedisServer server;
  ASSERT_TRUE(server.ready()) << server.log();
  auto db = server.Connect();
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  Fixture f = Fixture::Make(40);
  const int k = 3;
  // The same tasks through the shared-memory path: the reference gradients, per task.
  auto pool = MakeFunctionPool(Options(k));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  auto reference = (*pool)->RunAll(f.Tasks(k));
  ASSERT_TRUE(reference.ok()) << reference.status().ToString();

  ASSERT_TRUE(db->SetBlob(kParams, f.model->Params()).ok());
  ASSERT_TRUE(db->Command({"RPUSH", kList, "", "", ""}).ok());
  auto results = (*pool)->RunAll(StoreTasks(f, k, server, server.password()));
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  auto items = db->Command({"LRANGE", kList, "0", "-1"});
  ASSERT_TRUE(items.ok()) << items.status().ToString();
  ASSERT_EQ(items->elements.size(), size_t(k));
  std::vector<uint64_t> samples;
  std::vector<std::string> weights = {"P2P.LAVG", "p2p:t:avg", kList, "WEIGHTS"};
  for (int i = 0; i < k; ++i) {
    EXPECT_EQ((*results)[i].samples, (*reference)[i].samples);
    EXPECT_EQ((*results)[i].loss_sum, (*reference)[i].loss_sum);
    auto grad = store::DecodeBlob(items->elements[i].str);
    ASSERT_TRUE(grad.ok()) << "slot " << i << ": " << grad.status().ToString();
    EXPECT_TRUE(SameBits(*grad, (*reference)[i].values())) << "slot " << i;
    samples.push_back((*reference)[i].samples);
    weights.push_back(std::to_string(samples.back()));
  }
  // The database's mean of the slots is bitwise the pool's WeightedMean of the same results.
  std::vector<float> mean(f.model->NumParams());
  ASSERT_TRUE(WeightedMean(*reference, samples, mean).ok());
  std::vector<std::string_view> args(weights.begin(), weights.end());
  ASSERT_TRUE(db->Command(args).ok());
  auto avg = db->GetBlob("p2p:t:avg");
  ASSERT_TRUE(avg.ok()) << avg.status().ToString();
  EXPECT_TRUE(SameBits(*avg, mean));

  // New parameters under a new version: the (warm or fresh) functions read them, not a cache.
  std::vector<float> changed(f.model->Params().begin(), f.model->Params().end());
  for (float& v : changed) v *= 0.5f;
  ASSERT_TRUE(db->SetBlob(kParams, changed).ok());
  ASSERT_TRUE(db->Command({"DEL", kList}).ok());
  ASSERT_TRUE(db->Command({"RPUSH", kList, "", "", ""}).ok());
  auto tasks = StoreTasks(f, k, server, server.password());
  for (auto& t : tasks) t.params_version += 1;
  ASSERT_TRUE((*pool)->RunAll(std::move(tasks)).ok());
  auto second = db->Command({"LRANGE", kList, "0", "0"});
  ASSERT_TRUE(second.ok());
  auto g1 = store::DecodeBlob(second->elements[0].str);
  ASSERT_TRUE(g1.ok());
  EXPECT_FALSE(SameBits(*g1, (*reference)[0].values())) << "the new parameters were not read";
}

TEST(FunctionStoreTest, ABadDatabaseOrMissingKeyFailsTheTaskNamingIt) {
  test::RedisServer server;
  ASSERT_TRUE(server.ready()) << server.log();
  auto db = server.Connect();
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  Fixture f = Fixture::Make(8);
  auto pool = MakeFunctionPool(Options(1));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  // No parameters in the database.
  auto r = (*pool)->RunAll(StoreTasks(f, 1, server, server.password()));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(kParams)) << r.status().ToString();
  // Parameters, but the peer made no list: the gradient has nowhere to go.
  ASSERT_TRUE(db->SetBlob(kParams, f.model->Params()).ok());
  r = (*pool)->RunAll(StoreTasks(f, 1, server, server.password()));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(kList)) << r.status().ToString();
  // A wrong password.
  r = (*pool)->RunAll(StoreTasks(f, 1, server, "wrong"));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("authentication refused")) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr(server.url())) << r.status().ToString();
  EXPECT_THAT(r.status().message(), ::testing::Not(HasSubstr(server.password())));
  // Parameters of another model size.
  ASSERT_TRUE(db->SetBlob(kParams, std::vector<float>(7, 1.0f)).ok());
  ASSERT_TRUE(db->Command({"RPUSH", kList, ""}).ok());
  r = (*pool)->RunAll(StoreTasks(f, 1, server, server.password()));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("holds 7 parameters")) << r.status().ToString();
}

// The store fields survive the task frame, and a frame with bad ones is refused before use.
TEST(FunctionStoreTest, TheTaskFrameCarriesTheStoreFieldsAndRejectsBadOnes) {
  Fixture f = Fixture::Make(4);
  Task t = f.Tasks(1)[0];
  t.store = Task::Store{.url = "unix:///tmp/x.sock",
                        .password = "pw",
                        .params_key = "p",
                        .list_key = "l",
                        .index = 7};
  std::string frame = EncodeTask(t);
  auto decoded = TakeTask(frame);
  ASSERT_TRUE(decoded.ok() && decoded->has_value()) << decoded.status().ToString();
  ASSERT_TRUE((*decoded)->store.has_value());
  EXPECT_EQ((*decoded)->store->url, "unix:///tmp/x.sock");
  EXPECT_EQ((*decoded)->store->password, "pw");
  EXPECT_EQ((*decoded)->store->params_key, "p");
  EXPECT_EQ((*decoded)->store->list_key, "l");
  EXPECT_EQ((*decoded)->store->index, 7u);
  for (auto bad :
       {Task::Store{.url = "", .params_key = "p", .list_key = "l"},
        Task::Store{.url = "u", .params_key = std::string(5000, 'k'), .list_key = "l"},
        Task::Store{.url = "u", .params_key = "p", .list_key = "l", .index = 1u << 30}}) {
    t.store = bad;
    frame = EncodeTask(t);
    auto r = TakeTask(frame);
    EXPECT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr("task store")) << r.status().ToString();
  }
}

}  // namespace
}  // namespace p2p::offload
