// The amqp backend's messages are untrusted: every decoder bounds and validates.
#include "serverless_offload/remote_wire.h"

#include <gtest/gtest.h>

namespace p2p::offload {
namespace {

TEST(RemoteWireTest, ParamsRequestRoundTripsAndRejectsBadInput) {
  const std::string b = EncodeParamsRequest(
      {.version = 7, .num_params = 100, .reply_to = "p2ptrain.fnworker.h.1.ab", .worker = "w"});
  EXPECT_EQ(KindOf(b), MessageKind::kParamsRequest);
  auto r = DecodeParamsRequest(b);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->version, 7u);
  EXPECT_EQ(r->num_params, 100u);
  EXPECT_EQ(r->reply_to, "p2ptrain.fnworker.h.1.ab");
  EXPECT_EQ(DecodeParamsRequest(b + "x").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(DecodeParamsRequest(b.substr(0, b.size() - 1)).status().code(), StatusCode::kDataLoss);
  // A reply queue the broker would refuse, or that names a reserved queue.
  for (const char* bad : {"", "has space", "amq.rabbitmq.reply-to"}) {
    const std::string m =
        EncodeParamsRequest({.version = 1, .num_params = 1, .reply_to = bad, .worker = "w"});
    EXPECT_EQ(DecodeParamsRequest(m).status().code(), StatusCode::kDataLoss) << bad;
  }
}

TEST(RemoteWireTest, ParamsReplyChecksTheCountBeforeAllocating) {
  const std::vector<float> params = {1, 2, 3};
  const std::string b = EncodeParamsReply(4, "", params);
  EXPECT_EQ(KindOf(b), MessageKind::kParamsReply);
  auto r = DecodeParamsReply(b, 3);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->params, params);
  EXPECT_EQ(r->version, 4u);
  // The count the task announced is the bound: another count is refused, not allocated.
  EXPECT_EQ(DecodeParamsReply(b, 2).status().code(), StatusCode::kDataLoss);
  // A count field that lies about the body.
  std::string lying = b;
  const uint64_t huge = uint64_t{1} << 40;
  std::memcpy(lying.data() + lying.size() - 3 * sizeof(float) - 8, &huge, 8);
  EXPECT_EQ(DecodeParamsReply(lying, huge).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(DecodeParamsReply(b.substr(0, b.size() - 1), 3).status().code(), StatusCode::kDataLoss);
  auto err = DecodeParamsReply(EncodeParamsReply(4, "gone", {}), 3);
  ASSERT_TRUE(err.ok());
  EXPECT_EQ(err->error, "gone");
}

TEST(RemoteWireTest, WholeMessageDecodersRejectTruncationAndTrailingBytes) {
  Task t;
  t.id = 1;
  t.model.name = "logreg";
  t.model.input = {1, 1, 4};
  t.model.num_classes = 2;
  t.params_version = 1;
  t.num_params = 10;
  t.reply_to = "p2ptrain.fnpool.h.1.cd";
  t.x = ml::Matrix::Zero(2, 4);
  t.y = {0, 1};
  const std::string task = EncodeTask(t);
  EXPECT_EQ(KindOf(task), MessageKind::kTask);
  auto back = DecodeTask(task);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->reply_to, t.reply_to);
  EXPECT_EQ(DecodeTask(task + "junk").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(DecodeTask(task.substr(0, task.size() - 4)).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(DecodeResult("P2PRSLT1").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(KindOf("garbage!!"), MessageKind::kUnknown);
  EXPECT_EQ(KindOf(""), MessageKind::kUnknown);
}

TEST(RemoteWireTest, QueueNamesAreValidatedAndPrivateNamesAreUnique) {
  EXPECT_TRUE(ValidateQueueName("p2ptrain.functions", "--fn-queue").ok());
  EXPECT_NE(ValidateQueueName(std::string(256, 'a'), "--fn-queue").message().find("--fn-queue"),
            std::string::npos);
  const std::string a = PrivateQueueName("p2ptrain.fnpool");
  EXPECT_TRUE(ValidateQueueName(a, "x").ok()) << a;
  EXPECT_NE(a, PrivateQueueName("p2ptrain.fnpool"));
}

}  // namespace
}  // namespace p2p::offload
