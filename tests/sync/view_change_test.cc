// The view-change protocol (sync/membership) over in-process transports, one thread per rank,
// with scripted failures: dead members, a dead coordinator, a coordinator that dies during the
// change, two failures at once, lost messages, and a slow peer that comes back after eviction.
#include "sync/membership/view_change.h"

#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <thread>

#include "broker/inproc_transport.h"
#include "sync/membership/failure_detector.h"
#include "sync/membership/view_messages.h"
#include "tests/sync/lossy_transport.h"

namespace p2p::sync::membership {
namespace {

using namespace std::chrono_literals;
using broker::MessageType;

constexpr auto kAttempt = 300ms;  // short: every wait here ends by a decision or a timeout

using test::LossyTransport;

struct RankScript {
  enum Kind { kRun, kDead, kCrashAfterProposals } kind = kRun;
  std::vector<int> suspects;
  Round last_round{1, 7};
  LossyTransport::Filter drop;  // for kRun: messages this rank's sends lose
};

// Runs AgreeOnNextView on every kRun rank of a group of `w`, starting from view 0.
std::vector<Result<ViewChangeOutcome>> RunChange(int w, std::vector<RankScript> script) {
  auto group = broker::MakeInProcGroup(w);
  std::vector<Result<ViewChangeOutcome>> out(w, Status(StatusCode::kInternal, "did not run"));
  std::vector<std::thread> threads;
  for (int r = 0; r < w; ++r) {
    if (script[r].kind == RankScript::kDead) {
      EXPECT_TRUE(group[r]->Close().ok());
      continue;
    }
    auto body = [&, r] {
      broker::Transport* t = group[r].get();
      std::optional<LossyTransport> lossy;
      if (script[r].drop) t = &lossy.emplace(*group[r], script[r].drop);
      Mailbox mailbox(*t, {.run_id = "view-test"});
      if (script[r].kind == RankScript::kCrashAfterProposals) {
        // Coordinates until it holds a proposal, then dies without deciding.
        while (!mailbox.TakeParked(MessageType::kViewPropose, [](auto&) { return true; })) {
          if (!mailbox.Pump(broker::DeadlineIn(5s)).ok()) break;
        }
        EXPECT_TRUE(group[r]->Close().ok());
        return;
      }
      ViewChangeInput in{InitialView(w), 1, script[r].suspects, script[r].last_round};
      out[r] = AgreeOnNextView(mailbox, in, {.attempt_timeout = kAttempt});
    };
    threads.emplace_back(body);
  }
  for (auto& t : threads) t.join();
  return out;
}

std::vector<RankScript> Everyone(int w, std::vector<int> suspects) {
  return std::vector<RankScript>(w, RankScript{.suspects = std::move(suspects)});
}

// Every rank in `ranks` installed the same view with exactly `members`.
void ExpectAgreed(const std::vector<Result<ViewChangeOutcome>>& out, const std::vector<int>& ranks,
                  const std::vector<int>& members) {
  for (int r : ranks) {
    ASSERT_TRUE(out[r].ok()) << "rank " << r << ": " << out[r].status().message();
    EXPECT_EQ(out[r]->view.members, members) << "rank " << r;
    EXPECT_EQ(out[r]->view.id, out[ranks[0]]->view.id) << "rank " << r;
    EXPECT_EQ(out[r]->resume_after, out[ranks[0]]->resume_after) << "rank " << r;
  }
}

TEST(ViewChange, SurvivorsOfOneDeadPeerAgreeOnTheRest) {
  auto script = Everyone(4, {3});
  script[3].kind = RankScript::kDead;
  auto out = RunChange(4, script);
  ExpectAgreed(out, {0, 1, 2}, {0, 1, 2});
  EXPECT_EQ(out[0]->view.id, 1u);
  EXPECT_EQ(out[1]->coordinator, 0);
}

TEST(ViewChange, APeerThatHasNotNoticedYetIsStillCounted) {
  // Rank 2 still believes rank 3 alive; the coordinator keeps only ranks every proposer hears.
  auto script = Everyone(4, {3});
  script[3].kind = RankScript::kDead;
  script[2].suspects = {};
  auto out = RunChange(4, script);
  ExpectAgreed(out, {0, 1, 2}, {0, 1, 2});
}

TEST(ViewChange, TwoOfFourDeadIsLostQuorumOnEverySurvivor) {
  auto script = Everyone(4, {2, 3});
  script[2].kind = script[3].kind = RankScript::kDead;
  auto out = RunChange(4, script);
  for (int r : {0, 1}) {
    ASSERT_FALSE(out[r].ok());
    EXPECT_EQ(out[r].status().code(), StatusCode::kUnavailable);
    EXPECT_NE(out[r].status().message().find("lost quorum: 2 of 4 ranks reachable (0, 1)"),
              std::string::npos)
        << out[r].status().message();
  }
}

TEST(ViewChange, TwoFailuresAtOnceInFiveLeaveAMajority) {
  auto script = Everyone(5, {1, 3});
  script[1].kind = script[3].kind = RankScript::kDead;
  auto out = RunChange(5, script);
  ExpectAgreed(out, {0, 2, 4}, {0, 2, 4});
}

TEST(ViewChange, DeadCoordinatorIsSuspectedAndTheNextLowestDecides) {
  // Nobody noticed rank 0 died; they name it, wait, then suspect it.
  auto script = Everyone(4, {});
  script[0].kind = RankScript::kDead;
  auto out = RunChange(4, script);
  ExpectAgreed(out, {1, 2, 3}, {1, 2, 3});
  EXPECT_EQ(out[1]->coordinator, 1);
  EXPECT_EQ(out[2]->attempts, 2);
}

TEST(ViewChange, CoordinatorDyingDuringTheChangeIsReplaced) {
  auto script = Everyone(5, {4});
  script[4].kind = RankScript::kDead;
  script[0].kind = RankScript::kCrashAfterProposals;
  auto out = RunChange(5, script);
  ExpectAgreed(out, {1, 2, 3}, {1, 2, 3});
}

TEST(ViewChange, LostProposalEvictsItsSenderButNotTheMajority) {
  // Rank 3's proposal never reaches coordinator 0: the others go on without it, and rank 3
  // learns from the install that it was evicted instead of training on.
  auto script = Everyone(5, {4});
  script[4].kind = RankScript::kDead;
  script[3].drop = [](int to, const broker::Envelope& e) {
    return to == 0 && e.type == MessageType::kViewPropose;
  };
  auto out = RunChange(5, script);
  ExpectAgreed(out, {0, 1, 2}, {0, 1, 2});
  ASSERT_FALSE(out[3].ok());
  EXPECT_NE(out[3].status().message().find("evicted from view 1"), std::string::npos)
      << out[3].status().message();
}

TEST(ViewChange, LostInstallNeverYieldsTwoViewsWithOneId) {
  // The install to rank 2 is lost: rank 2 gives up on coordinator 0 and tries rank 1, which has
  // already decided, so it ends without a view (lost quorum) — never with a different view 1.
  auto script = Everyone(4, {3});
  script[3].kind = RankScript::kDead;
  script[0].drop = [](int to, const broker::Envelope& e) {
    return to == 2 && e.type == MessageType::kViewInstall;
  };
  auto out = RunChange(4, script);
  ExpectAgreed(out, {0, 1}, {0, 1, 2});
  EXPECT_FALSE(out[2].ok());
}

TEST(ViewChange, MembersAheadByOneRoundResumeAfterTheCommonRound) {
  // Rank 1 completed round 8 before rank 3 died; the others did not: everyone resumes after 7.
  auto script = Everyone(4, {3});
  script[3].kind = RankScript::kDead;
  script[1].last_round = {1, 8};
  auto out = RunChange(4, script);
  ExpectAgreed(out, {0, 1, 2}, {0, 1, 2});
  EXPECT_EQ(out[1]->resume_after, (Round{1, 7}));
}

TEST(ViewChange, RejectsInputsThatBreakItsPreconditions) {
  auto group = broker::MakeInProcGroup(2);
  Mailbox mailbox(*group[0], {.run_id = "view-test"});
  ViewChangeInput not_member{View{3, {1}}, 4, {}, {}};
  EXPECT_EQ(AgreeOnNextView(mailbox, not_member).status().code(), StatusCode::kInvalidArgument);
  ViewChangeInput old_id{InitialView(2), 0, {}, {}};
  EXPECT_EQ(AgreeOnNextView(mailbox, old_id).status().code(), StatusCode::kInvalidArgument);
}

TEST(ViewMessages, RoundTripAndHostileBodies) {
  const ViewProposal p{3, Round{2, 9}, {0, 2, 5}};
  auto back = DecodeViewProposal(EncodeViewProposal(p), 6);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(*back, p);
  const ViewInstall i{3, Round{2, 8}, {0, 5}};
  auto iback = DecodeViewInstall(EncodeViewInstall(i), 6);
  ASSERT_TRUE(iback.ok());
  EXPECT_EQ(*iback, i);

  broker::Bytes body = EncodeViewProposal(p);
  EXPECT_EQ(DecodeViewProposal(body, 5).status().code(), StatusCode::kInvalidArgument);  // rank 5
  body.pop_back();
  EXPECT_EQ(DecodeViewProposal(body, 6).status().code(), StatusCode::kDataLoss);  // truncated
  broker::Bytes huge = EncodeViewProposal({1, {}, {}});
  huge[24] = huge[25] = huge[26] = huge[27] = std::byte{0xff};  // claims 4G ranks, sends none
  EXPECT_EQ(DecodeViewProposal(huge, 6).status().code(), StatusCode::kInvalidArgument);
  const ViewProposal unsorted{1, {}, {2, 1}};
  EXPECT_EQ(DecodeViewProposal(EncodeViewProposal(unsorted), 6).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(FailureDetector, SuspectsSilentAndGoneRanksOnly) {
  using Clock = FailureDetector::Clock;
  const auto t0 = Clock::time_point{} + 100s;
  FailureDetector fd(1, {0, 1, 2, 3}, 3s, t0);
  EXPECT_TRUE(fd.Suspects(t0 + 3s).empty());  // silence equal to the timeout is not yet death
  fd.Heard(0, t0 + 2s);
  fd.Gone(3);
  EXPECT_EQ(fd.Suspects(t0 + 4s), (std::vector<int>{2, 3}));
  EXPECT_EQ(fd.NextSuspicion(t0 + 4s), t0 + 5s);  // rank 0, heard at +2 s
  fd.Heard(3, t0 + 4s);                           // a gone rank stays suspected
  EXPECT_EQ(fd.Suspects(t0 + 4s), (std::vector<int>{2, 3}));
  fd.Watch({0, 1}, t0 + 10s);
  EXPECT_TRUE(fd.Suspects(t0 + 12s).empty());
  EXPECT_EQ(fd.Suspects(t0 + 14s), (std::vector<int>{0}));
}

}  // namespace
}  // namespace p2p::sync::membership
