#include "spirt/db_heartbeat.h"

#include <spdlog/spdlog.h>

namespace p2p::spirt {

DbHeartbeat::DbHeartbeat(sync::Mailbox& mailbox, std::vector<store::ConnectOptions> databases,
                         int self, std::vector<int> members, std::chrono::milliseconds interval,
                         std::chrono::milliseconds timeout)
    : mailbox_(mailbox),
      databases_(std::move(databases)),
      self_(self),
      interval_(interval),
      clients_(databases_.size()),
      members_(std::move(members)) {
  // A PING that takes longer than the timeout counts as no answer.
  for (auto& db : databases_) {
    db.connect_timeout = timeout;
    db.command_timeout = timeout;
  }
  thread_ = std::thread([this] { Run(); });
}

DbHeartbeat::~DbHeartbeat() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void DbHeartbeat::SetMembers(std::vector<int> members) {
  std::lock_guard lock(mu_);
  members_ = std::move(members);
}

std::optional<std::string> DbHeartbeat::WaitUnreachable(
    int rank, std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_until(lock, deadline, [&] { return unreachable_.contains(rank); })) {
    return std::nullopt;
  }
  return unreachable_.at(rank);
}

uint64_t DbHeartbeat::pings() const {
  std::lock_guard lock(mu_);
  return pings_;
}

std::string DbHeartbeat::PingOne(int r) {
  auto& client = clients_[static_cast<size_t>(r)];
  if (!client) {
    auto connected = store::RedisClient::Connect(databases_[static_cast<size_t>(r)]);
    if (!connected.ok()) return connected.status().message();
    client = std::make_unique<store::RedisClient>(std::move(*connected));
  }
  if (Status s = client->Ping(); !s.ok()) {
    client.reset();  // a failed connection stays failed (hiredis); reconnect next time
    return s.message();
  }
  return "";
}

void DbHeartbeat::Run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    const std::vector<int> members = members_;
    lock.unlock();
    std::vector<std::pair<int, std::string>> outcomes;
    for (int r : members) {
      if (r != self_) outcomes.emplace_back(r, PingOne(r));
    }
    std::vector<int> lost;
    std::vector<std::string> why;
    lock.lock();
    for (auto& [r, failure] : outcomes) {
      ++pings_;
      if (failure.empty()) {
        if (unreachable_.erase(r) > 0) {
          spdlog::info("SPIRT: rank {}'s database {} answers again", r,
                       databases_[static_cast<size_t>(r)].address.Describe());
        }
      } else if (!unreachable_.contains(r)) {  // else suspected and logged already
        spdlog::warn(
            "SPIRT: rank {}'s database {} does not answer its heartbeat PING ({}); rank {} is "
            "suspected",
            r, databases_[static_cast<size_t>(r)].address.Describe(), failure, r);
        lost.push_back(r);
        why.push_back(std::move(failure));
      }
    }
    if (!lost.empty()) {
      lock.unlock();
      mailbox_.Suspect(lost);  // the failure detector's "gone": the view change takes it out
      lock.lock();
      for (size_t i = 0; i < lost.size(); ++i) unreachable_[lost[i]] = std::move(why[i]);
      cv_.notify_all();
    }
    // A timer, not a wait for another peer: wakes early only to stop.
    cv_.wait_for(lock, interval_, [this] { return stop_; });
  }
}

}  // namespace p2p::spirt
