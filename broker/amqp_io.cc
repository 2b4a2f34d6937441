#include "broker/amqp_io.h"

#include <fmt/format.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <random>

#include "broker/amqp_error.h"
#include "broker/backoff.h"

namespace p2p::broker::amqp {
namespace {

constexpr size_t kBurstBytes = 4 << 20;  // publish this much, then look at incoming frames
constexpr int kMaxFramesPerRound = 64;

std::chrono::milliseconds IdleWait(int heartbeat_s) {
  // Wake at least 4x per heartbeat interval so rabbitmq-c sends ours on time (at interval/2).
  auto d = std::chrono::milliseconds(heartbeat_s * 1000 / 4);
  return heartbeat_s <= 0
             ? std::chrono::milliseconds(1000)
             : std::clamp(d, std::chrono::milliseconds(50), std::chrono::milliseconds(1000));
}

}  // namespace

std::string DirectKey(int rank) { return fmt::format("rank.{}", rank); }
std::string BroadcastKey(int from) { return fmt::format("bcast.{}", from); }

Bytes HelloBody(FrameKind kind, int rank, uint64_t incarnation) {
  ChunkHeader h{kind, static_cast<uint32_t>(rank)};
  h.incarnation = incarnation;
  return std::move(EncodeChunks(h, {}, kChunkHeaderBytes + 1).front());
}

WakeFd::WakeFd() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  P2P_CHECK(fd_ >= 0, "eventfd: {}", std::strerror(errno));
}
WakeFd::~WakeFd() { ::close(fd_); }
void WakeFd::Notify() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(fd_, &one, sizeof(one));  // EAGAIN: already signalled
}
void WakeFd::Drain() {
  uint64_t v;
  [[maybe_unused]] ssize_t n = ::read(fd_, &v, sizeof(v));
}

TransportStats AtomicStats::Snapshot() const {
  return {bytes_sent.load(), bytes_received.load(), messages_sent.load(), messages_received.load(),
          rejected.load()};
}

IoThread::IoThread(const IoConfig& config, Shared& shared, Session session)
    : config_(config), shared_(shared), reassembler_(config.reassembly) {
  reassembler_.set_drop_observer([this](DropReason reason, uint32_t rank) {
    LogDrop(
        DropReasonName(reason), static_cast<int>(rank),
        fmt::format("reassembly dropped a chunk or an incomplete message claiming rank {}", rank));
  });
  Install(std::move(session));
}

// Logs a drop (counted by the caller) once per reason and claimed rank: an attacker's flood must
// not become a flood of log lines, yet an operator sees that (and why) frames are being dropped.
void IoThread::LogDrop(const char* reason, int claimed_rank, const std::string& detail) {
  if (!logged_.emplace(reason, claimed_rank).second) return;
  spdlog::warn(
      "amqp: rank {} dropped a frame ({}): {}; further drops for this reason from this claimed "
      "sender are only counted (rejected_frames)",
      config_.rank, reason, detail);
}

void IoThread::Run() {
  Status result;
  try {
    result = Serve();
  } catch (const std::exception& e) {  // a broken invariant must still reach the caller
    result = Status(StatusCode::kInternal, fmt::format("AMQP I/O thread: {}", e.what()));
  }
  Finish(std::move(result));
}

Status IoThread::Serve() {
  while (true) {
    Status s = ServeConnection();
    if (s.ok()) return Goodbye();
    if (!IsRetryable(s)) return s;
    P2P_RETURN_IF_ERROR(Reconnect(s));
  }
}

// Returns OK when asked to stop (and flushed), an error when the connection failed.
Status IoThread::ServeConnection() {
  while (true) {
    P2P_ASSIGN_OR_RETURN(bool stop, TakeSubmitted());
    if (stop) return Status::Ok();
    P2P_RETURN_IF_ERROR(PublishBurst());
    P2P_ASSIGN_OR_RETURN(int frames, DrainFrames());
    if (frames == 0 && published_ == inflight_.size()) P2P_RETURN_IF_ERROR(WaitForWork());
    reassembler_.EvictStale();  // also when nothing arrives any more
    SyncReassemblyStats();
  }
}

Result<bool> IoThread::TakeSubmitted() {
  std::lock_guard lock(shared_.mu);
  while (!shared_.submitted.empty()) {
    inflight_.push_back({std::move(shared_.submitted.front())});
    shared_.submitted.pop_front();
  }
  if (!shared_.stop) return false;
  return shared_.pending_chunks == 0 || Clock::now() >= shared_.stop_deadline;
}

Status IoThread::PublishBurst() {
  size_t bytes = 0;
  while (published_ < inflight_.size() && bytes < kBurstBytes) {
    InFlight& f = inflight_[published_];
    P2P_RETURN_IF_ERROR(
        session_->Publish(config_.topology.exchange, f.out.routing_key, f.out.body));
    f.tag = ++last_tag_;
    ++published_;
    bytes += f.out.body.size();
    shared_.stats.bytes_sent += f.out.body.size();
  }
  return Status::Ok();
}

// Handles every frame that is already readable; returns how many.
Result<int> IoThread::DrainFrames() {
  int n = 0;
  for (; n < kMaxFramesPerRound; ++n) {
    P2P_ASSIGN_OR_RETURN(Event event, session_->Poll(std::chrono::milliseconds(0)));
    if (std::holds_alternative<std::monostate>(event)) break;
    P2P_RETURN_IF_ERROR(OnEvent(event));
  }
  return n;
}

// Sleeps in poll(2) until the socket is readable, work is submitted, or it is time to let
// rabbitmq-c service heartbeats (the next DrainFrames does that).
Status IoThread::WaitForWork() {
  pollfd fds[2] = {{session_->fd(), POLLIN, 0}, {shared_.wake.fd(), POLLIN, 0}};
  int rc = ::poll(fds, 2, static_cast<int>(idle_wait_.count()));
  if (rc < 0 && errno != EINTR) return Unavailable("poll: {}", std::strerror(errno));
  if (fds[1].revents & POLLIN) shared_.wake.Drain();
  return Status::Ok();
}

Status IoThread::OnEvent(Event& event) {
  if (auto* confirm = std::get_if<Confirm>(&event)) return OnConfirm(*confirm);
  if (auto* delivery = std::get_if<Delivery>(&event)) {
    OnBody(delivery->envelope.body());
    // Acked once the delivery is fully read into our memory (reassembly buffer or inbox). Acking
    // chunks one by one, not at message end, keeps partial messages from pinning the prefetch
    // window (3 senders x 3 chunks would deadlock a prefetch of 8).
    return session_->Ack(delivery->envelope.delivery_tag());
  }
  return Status::Ok();
}

Status IoThread::OnConfirm(const Confirm& confirm) {
  if (!confirm.ack) {
    return DataLoss("the broker refused (basic.nack) publish #{}: an internal broker error",
                    confirm.tag);
  }
  for (size_t i = 0; i < published_ && inflight_[i].tag <= confirm.tag; ++i) {
    if (confirm.multiple || inflight_[i].tag == confirm.tag) inflight_[i].confirmed = true;
  }
  uint64_t bytes = 0, chunks = 0;
  while (published_ > 0 && inflight_.front().confirmed) {
    if (inflight_.front().out.counted) bytes += inflight_.front().out.body.size(), ++chunks;
    inflight_.pop_front();
    --published_;
  }
  if (chunks == 0) return Status::Ok();
  std::lock_guard lock(shared_.mu);
  shared_.pending_bytes -= bytes;
  shared_.pending_chunks -= chunks;
  shared_.cv.notify_all();
  return Status::Ok();
}

// Malformed or foreign bodies, replays and what the reassembler evicts are counted in
// stats.rejected (the peers' `rejected_frames`) and dropped, never fatal.
void IoThread::OnBody(std::span<const std::byte> body) {
  shared_.stats.bytes_received += body.size();
  Result<ChunkView> chunk = DecodeChunk(body, config_.reassembly.max_message_bytes);
  uint32_t from = chunk.ok() ? chunk->header.from_rank : 0;
  if (!chunk.ok()) {
    ++shared_.stats.rejected;
    return LogDrop("bad_chunk", -1, std::string(chunk.status().message()));
  }
  if (from >= static_cast<uint32_t>(config_.size) || from == static_cast<uint32_t>(config_.rank)) {
    ++shared_.stats.rejected;
    return LogDrop("bad_rank", -1,
                   fmt::format("a chunk claiming rank {} in a run of {} (this is rank {})", from,
                               config_.size, config_.rank));
  }
  if (chunk->header.kind != FrameKind::kData) return OnHello(chunk->header);
  Result<std::optional<Message>> message = reassembler_.Add(*chunk);
  SyncReassemblyStats();  // errors included: the reassembler counts every drop itself
  if (!message.ok() || !message->has_value()) return;
  ++shared_.stats.messages_received;
  std::lock_guard lock(shared_.mu);
  shared_.inbox.push_back(std::move(**message));
  shared_.cv.notify_all();
}

void IoThread::SyncReassemblyStats() {
  shared_.stats.rejected += reassembler_.rejected() - reassembly_rejected_;
  reassembly_rejected_ = reassembler_.rejected();
  shared_.stats.incomplete_bytes = reassembler_.pending_bytes();
}

// A hello is unauthenticated, so it changes no reassembly or replay state: a restarted peer's
// old incarnation ages out of the reassembler's bounded tables instead.
void IoThread::OnHello(const ChunkHeader& header) {
  if (header.kind == FrameKind::kHello) {  // answer so that a peer that started later hears us
    Bytes reply = HelloBody(FrameKind::kHelloReply, config_.rank, config_.incarnation);
    inflight_.push_back({Outgoing{DirectKey(header.from_rank), std::move(reply), false}});
  }
  std::lock_guard lock(shared_.mu);
  shared_.hello_from[header.from_rank] = header.incarnation;
  shared_.cv.notify_all();
}

Status IoThread::Reconnect(const Status& cause) {
  DropSession();
  for (InFlight& f : inflight_) f.tag = 0, f.confirmed = false;  // republish all unconfirmed
  published_ = 0;
  last_tag_ = 0;
  ++shared_.stats.reconnects;
  const Deadline give_up = Clock::now() + config_.reconnect_timeout;
  Status last = cause;
  for (Backoff backoff;;) {
    if (WaitBackoff(backoff.Next())) return last.Annotate("stopped while reconnecting");
    if (Clock::now() >= give_up) {
      return Unavailable(
          "lost the connection to RabbitMQ at {} and could not reconnect within "
          "{} ms; last error: {}",
          config_.session.url.Endpoint(), config_.reconnect_timeout.count(), last.message());
    }
    Deadline attempt = std::min(give_up, Clock::now() + config_.session.rpc_timeout);
    Result<Session> s = OpenWithTopology(config_.session, config_.topology, attempt);
    if (s.ok()) {
      Install(std::move(s).value());
      return Status::Ok();
    }
    last = s.status();
    if (!IsRetryable(last) && !IsQueueInExclusiveUse(last)) return last.Annotate("reconnecting");
  }
}

bool IoThread::WaitBackoff(std::chrono::milliseconds d) {
  std::unique_lock lock(shared_.mu);
  return shared_.cv.wait_for(lock, d, [&] { return shared_.stop; });
}

void IoThread::Install(Session session) {
  idle_wait_ = IdleWait(session.heartbeat_s());
  std::lock_guard lock(shared_.mu);
  shared_.socket_fd = session.fd();
  session_.emplace(std::move(session));
}

void IoThread::DropSession() {
  {
    std::lock_guard lock(shared_.mu);
    shared_.socket_fd = -1;
  }
  session_.reset();
}

Status IoThread::Goodbye() {
  Status flushed;
  {
    std::lock_guard lock(shared_.mu);
    if (shared_.pending_chunks > 0) {
      flushed = Timeout("Close: {} chunk(s), {} bytes, not confirmed by the broker in time",
                        shared_.pending_chunks, shared_.pending_bytes);
    }
  }
  Status deleted = session_->DeleteQueue(config_.topology.queue);
  Status closed = session_->Close();
  DropSession();
  if (!flushed.ok()) return flushed;
  return deleted.ok() ? closed : deleted;
}

void IoThread::Finish(Status result) {
  session_.reset();
  std::lock_guard lock(shared_.mu);
  shared_.socket_fd = -1;
  if (shared_.stop) {
    shared_.goodbye = std::move(result);
  } else {
    shared_.failure = result.ok() ? Status(StatusCode::kInternal, "I/O thread ended") : result;
  }
  shared_.exited = true;
  shared_.cv.notify_all();
}

}  // namespace p2p::broker::amqp
