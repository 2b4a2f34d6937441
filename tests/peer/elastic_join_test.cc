// The state transfer of a rejoin (peer/elastic_join.h) between real Trainers on synthetic data,
// over in-process transports (no authentication: the handshake is covered end to end by
// elastic_restart_cli_test): a member admits a joiner with JoinDesk, and a joiner refuses a state
// whose parameters do not hash to what the members report.
#include "peer/elastic_join.h"

#include <gtest/gtest.h>

#include <thread>

#include "broker/inproc_transport.h"
#include "common/hash.h"

namespace p2p::peer {
namespace {

using namespace std::chrono_literals;
using broker::DeadlineIn;

TrainConfig SmallConfig(int rank) {
  TrainConfig c;
  c.data.name = "synthetic";
  c.data.synthetic_train = 600;
  c.data.synthetic_test = 100;
  c.model.name = "logreg";
  c.epochs = 3;
  c.progress = "off";
  c.threads = 1;
  c.size = 2;
  c.rank = rank;
  c.evaluation_slice = true;
  c.ResolveDefaults();
  return c;
}

std::unique_ptr<Trainer> MakeTrainer(int rank) {
  auto t = Trainer::Create(SmallConfig(rank));
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return std::move(*t);
}

// Rank 0 has evicted rank 1 (view 1 = {0}); rank 1 rejoins. `forge`: rank 0 sends a state whose
// parameters are not the ones it reports the hash of (a corrupted or forged state).
struct Outcome {
  Status member, joiner;
  std::string member_hash, joiner_hash;
  int joiner_first_epoch = 0;
  sync::membership::View joiner_view;
};

Outcome RunAdmission(bool forge) {
  auto group = broker::MakeInProcGroup(2);
  Outcome out;
  auto member_trainer = MakeTrainer(0);
  auto joiner_trainer = MakeTrainer(1);
  // The member has trained a little: its parameters differ from the joiner's fresh ones.
  member_trainer->model().Params()[0] += 0.5f;
  std::thread member([&] {
    sync::Mailbox mailbox(*group[0], {.run_id = "join-test"});
    mailbox.InstallView({1, {0}});
    sync::membership::Membership membership(mailbox, {});
    JoinDesk desk(mailbox, nullptr, *member_trainer, membership, 10, 5s);
    const auto deadline = DeadlineIn(30s);
    while (desk.Requests().empty()) {
      if (Status s = mailbox.Pump(deadline); !s.ok()) {
        out.member = s;
        return;
      }
      if (Status s = desk.Poll(); !s.ok()) {
        out.member = s;
        return;
      }
    }
    out.member_hash = HashFloats(member_trainer->model().Params());
    if (!forge) {
      out.member = desk.Admit(2, desk.Requests());
      return;
    }
    // A state whose parameters are not the ones the member vouches for.
    Checkpoint state = member_trainer->Snapshot(2);
    state.params[1] += 1.0f;
    state.extra = {{"view", 2}, {"members", {0, 1}}, {"steps_per_epoch", 10}};
    const std::string bytes = SerializeCheckpoint(state);
    broker::Envelope hash, body;
    hash.type = broker::MessageType::kParamsHash;
    hash.epoch = body.epoch = 2;
    hash.body = broker::Bytes(
        reinterpret_cast<const std::byte*>(out.member_hash.data()),
        reinterpret_cast<const std::byte*>(out.member_hash.data()) + out.member_hash.size());
    body.type = broker::MessageType::kState;
    body.body = broker::Bytes(reinterpret_cast<const std::byte*>(bytes.data()),
                              reinterpret_cast<const std::byte*>(bytes.data()) + bytes.size());
    out.member = mailbox.Send(std::move(hash), 1);
    if (out.member.ok()) out.member = mailbox.Send(std::move(body), 1);
  });
  {
    sync::Mailbox mailbox(*group[1], {.run_id = "join-test"});
    P2P_CHECK(joiner_trainer
                  ->set_sync_state([] { return Trainer::SyncState{}; },
                                   [](Trainer::SyncState) { return Status::Ok(); })
                  .ok(),
              "sync state");
    auto admitted = Rejoin(mailbox, nullptr, *joiner_trainer, DeadlineIn(30s), DeadlineIn(30s));
    out.joiner = admitted.status();
    out.joiner_hash = HashFloats(joiner_trainer->model().Params());
    out.joiner_first_epoch = joiner_trainer->first_epoch();
    out.joiner_view = mailbox.view();
    member.join();
  }
  return out;
}

TEST(ElasticJoinTest, TheJoinerTakesTheMembersStateAndView) {
  const Outcome out = RunAdmission(/*forge=*/false);
  ASSERT_TRUE(out.member.ok()) << out.member.ToString();
  ASSERT_TRUE(out.joiner.ok()) << out.joiner.ToString();
  EXPECT_EQ(out.joiner_hash, out.member_hash);
  EXPECT_EQ(out.joiner_first_epoch, 3);  // admitted after epoch 2
  EXPECT_EQ(out.joiner_view, (sync::membership::View{2, {0, 1}}));
}

TEST(ElasticJoinTest, AStateThatFailsItsHashCheckIsRefusedAndNotUsed) {
  auto fresh = MakeTrainer(1);
  const std::string fresh_hash = HashFloats(fresh->model().Params());
  const Outcome out = RunAdmission(/*forge=*/true);
  ASSERT_TRUE(out.member.ok()) << out.member.ToString();
  EXPECT_EQ(out.joiner.code(), StatusCode::kDataLoss);
  EXPECT_NE(out.joiner.message().find("refused the state sent by rank 0"), std::string::npos)
      << out.joiner.message();
  EXPECT_NE(out.joiner.message().find("nothing of it was used"), std::string::npos);
  EXPECT_EQ(out.joiner_hash, fresh_hash) << "the refused parameters were adopted";
  EXPECT_EQ(out.joiner_first_epoch, 1);
  EXPECT_EQ(out.joiner_view.id, 0u);
}

}  // namespace
}  // namespace p2p::peer
