#include "serverless_offload/task.h"

#include <gtest/gtest.h>

namespace p2p::offload {
namespace {

Task SmallTask() {
  Task t;
  t.id = 7;
  t.attempt = 1;
  t.model.name = "logreg";
  t.model.input = {1, 1, 3};
  t.model.num_classes = 2;
  t.params_path = "/dev/shm/x";
  t.params_version = 3;
  t.num_params = 8;
  t.x = ml::Matrix::Constant(2, 3, 0.5f);
  t.y = {0, 1};
  return t;
}

TEST(TaskTest, RoundTripsThroughPartialReads) {
  const std::string bytes = EncodeTask(SmallTask()) + EncodeTask(SmallTask());
  std::string buffer;
  int got = 0;
  for (char c : bytes) {  // byte by byte: every prefix is "incomplete", never an error
    buffer.push_back(c);
    auto t = TakeTask(buffer);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    if (!*t) continue;
    ++got;
    EXPECT_EQ((*t)->id, 7u);
    EXPECT_EQ((*t)->params_version, 3u);
    EXPECT_EQ((*t)->x, SmallTask().x);
    EXPECT_EQ((*t)->y, SmallTask().y);
  }
  EXPECT_EQ(got, 2);
  EXPECT_TRUE(buffer.empty());
}

TEST(TaskTest, MalformedTasksAreRejected) {
  auto corrupt = [](auto edit) {
    std::string b = EncodeTask(SmallTask());
    edit(b);
    return TakeTask(b).status().code();
  };
  EXPECT_EQ(corrupt([](std::string& b) { b[0] = 'X'; }), StatusCode::kDataLoss);
  // A header length far beyond the bound is refused before anything is read or allocated.
  EXPECT_EQ(corrupt([](std::string& b) { b[11] = 0x7f; }), StatusCode::kDataLoss);
  Task labels = SmallTask();
  labels.y = {0, 5};  // the model has 2 classes
  std::string b = EncodeTask(labels);
  EXPECT_EQ(TakeTask(b).status().code(), StatusCode::kDataLoss);
  Task shape = SmallTask();
  shape.model.input = {1, 1, 4};  // 3 features per row but the model takes 4
  b = EncodeTask(shape);
  EXPECT_EQ(TakeTask(b).status().code(), StatusCode::kDataLoss);
}

TEST(TaskTest, ResultsRoundTripAndLyingLengthsWait) {
  TaskResult r{.id = 3,
               .loss_sum = 1.5,
               .samples = 2,
               .compute_seconds = 0.1,
               .error = "",
               .gradient = {1, 2, 3},
               .busy_seconds = 0.25,
               .worker = "w1",
               .cold = true,
               .redelivered = true};
  std::string b = EncodeResult(r);
  std::string truncated = b.substr(0, b.size() - 1);
  auto partial = TakeResult(truncated);
  ASSERT_TRUE(partial.ok());
  EXPECT_FALSE(*partial);  // incomplete: the reader waits for more (the pool's deadline bounds it)
  auto whole = TakeResult(b);
  ASSERT_TRUE(whole.ok() && *whole);
  EXPECT_EQ((*whole)->gradient, r.gradient);
  EXPECT_EQ((*whole)->busy_seconds, 0.25);
  EXPECT_EQ((*whole)->worker, "w1");
  EXPECT_TRUE((*whole)->cold);
  EXPECT_TRUE((*whole)->redelivered);
  std::string huge = EncodeResult(r);
  const size_t at = huge.size() - 3 * sizeof(float) - 8;
  huge[at + 7] = 0x7f;  // claims 2^62 values
  EXPECT_EQ(TakeResult(huge).status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace p2p::offload
