#include "broker/inproc_transport.h"

#include <fmt/ranges.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>

namespace p2p::broker {

// Shared state of one group. Each mailbox has its own lock, so senders to different ranks do
// not contend; the connect barrier has a separate lock.
class InProcHub {
 public:
  struct Mailbox {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Message> queue;  // guarded by mu
    bool closed = false;        // guarded by mu
  };

  explicit InProcHub(int size) : connected_(size, false) {
    for (int i = 0; i < size; ++i) mailboxes_.push_back(std::make_unique<Mailbox>());
  }
  int size() const { return static_cast<int>(mailboxes_.size()); }
  Mailbox& mailbox(int rank) { return *mailboxes_[rank]; }

  // Marks `rank` connected and waits for all; returns the ranks still missing at the deadline.
  std::vector<int> ConnectAndWait(int rank, Deadline deadline) {
    std::unique_lock lock(mu_);
    connected_[rank] = true;
    cv_.notify_all();
    cv_.wait_until(lock, deadline, [this] { return Missing().empty(); });
    return Missing();
  }

 private:
  std::vector<int> Missing() const {  // requires mu_
    std::vector<int> missing;
    for (int i = 0; i < size(); ++i) {
      if (!connected_[i]) missing.push_back(i);
    }
    return missing;
  }

  std::vector<std::unique_ptr<Mailbox>> mailboxes_;  // fixed after construction
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<bool> connected_;  // guarded by mu_
};

InProcTransport::InProcTransport(std::shared_ptr<InProcHub> hub, int rank)
    : hub_(std::move(hub)), rank_(rank) {
  P2P_CHECK(hub_ && rank >= 0 && rank < hub_->size(), "rank {} outside the group", rank);
}

InProcTransport::~InProcTransport() { (void)Close(); }

int InProcTransport::size() const { return hub_->size(); }

Status InProcTransport::Connect(Deadline deadline) {
  std::vector<int> missing = hub_->ConnectAndWait(rank_, deadline);
  if (missing.empty()) return Status::Ok();
  return Timeout("in-process connect: ranks [{}] did not connect by the deadline",
                 fmt::join(missing, ", "));
}

Status InProcTransport::Send(int to_rank, std::span<const std::byte> msg) {
  if (to_rank < 0 || to_rank >= size() || to_rank == rank_) {
    return InvalidArgument("send: bad destination rank {} (size {}, self {})", to_rank, size(),
                           rank_);
  }
  {
    InProcHub::Mailbox& self = hub_->mailbox(rank_);
    std::lock_guard lock(self.mu);
    if (self.closed) return Unavailable("send: rank {} transport is closed", rank_);
  }
  InProcHub::Mailbox& box = hub_->mailbox(to_rank);
  {
    std::lock_guard lock(box.mu);
    if (box.closed) return Unavailable("send: rank {} has left", to_rank);
    box.queue.push_back(Message{rank_, Bytes(msg.begin(), msg.end())});
  }
  box.cv.notify_one();
  bytes_sent_ += msg.size();
  ++messages_sent_;
  return Status::Ok();
}

Status InProcTransport::Broadcast(std::span<const std::byte> msg) {
  std::vector<int> gone;
  for (int r = 0; r < size(); ++r) {
    if (r == rank_) continue;
    Status s = Send(r, msg);
    if (s.code() == StatusCode::kUnavailable) {
      gone.push_back(r);
    } else if (!s.ok()) {
      return s;
    }
  }
  if (gone.empty()) return Status::Ok();
  return Unavailable("broadcast: ranks [{}] unavailable", fmt::join(gone, ", "));
}

Result<std::optional<Message>> InProcTransport::Receive(Deadline deadline) {
  InProcHub::Mailbox& box = hub_->mailbox(rank_);
  std::unique_lock lock(box.mu);
  box.cv.wait_until(lock, deadline, [&box] { return box.closed || !box.queue.empty(); });
  if (box.closed) return Unavailable("receive: rank {} transport is closed", rank_);
  if (box.queue.empty()) return std::optional<Message>();
  Message m = std::move(box.queue.front());
  box.queue.pop_front();
  bytes_received_ += m.payload.size();
  ++messages_received_;
  return std::optional<Message>(std::move(m));
}

TransportStats InProcTransport::Stats() const {
  TransportStats s;
  s.bytes_sent = bytes_sent_;
  s.bytes_received = bytes_received_;
  s.messages_sent = messages_sent_;
  s.messages_received = messages_received_;
  return s;
}

Status InProcTransport::Close() {
  InProcHub::Mailbox& box = hub_->mailbox(rank_);
  {
    std::lock_guard lock(box.mu);
    box.closed = true;
    box.queue.clear();
  }
  box.cv.notify_all();
  return Status::Ok();
}

std::vector<std::unique_ptr<InProcTransport>> MakeInProcGroup(int size) {
  P2P_CHECK(size >= 1 && size <= kMaxInProcRanks, "group size {} outside [1, {}]", size,
            kMaxInProcRanks);
  auto hub = std::make_shared<InProcHub>(size);
  std::vector<std::unique_ptr<InProcTransport>> group;
  for (int r = 0; r < size; ++r) group.push_back(std::make_unique<InProcTransport>(hub, r));
  return group;
}

}  // namespace p2p::broker
