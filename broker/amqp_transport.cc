#include "broker/amqp_transport.h"

#include <sys/socket.h>

#include <algorithm>
#include <random>
#include <thread>

#include "broker/amqp_error.h"
#include "broker/amqp_io.h"
#include "broker/amqp_session.h"
#include "broker/amqp_url.h"
#include "broker/backoff.h"
#include "broker/envelope.h"

namespace p2p::broker {

struct AmqpTransport::State {
  AmqpOptions options;
  amqp::IoConfig io;
  amqp::Shared shared;
  std::thread thread;
  uint64_t next_seq = 0;
  bool connected = false;
  bool closed = false;
  Status close_status;
};

namespace {

constexpr size_t kMaxRunIdLength = 200;  // queue names are AMQP short strings (<= 255 bytes)

Status ValidateOptions(const AmqpOptions& o) {
  if (o.size < 1 || o.rank < 0 || o.rank >= o.size) {
    return InvalidArgument("rank {} / size {}: need 0 <= rank < size", o.rank, o.size);
  }
  bool id_ok =
      !o.run_id.empty() && o.run_id.size() <= kMaxRunIdLength &&
      std::all_of(o.run_id.begin(), o.run_id.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
      });
  if (!id_ok) return InvalidArgument("run id '{}' must match [A-Za-z0-9._-]{{1,200}}", o.run_id);
  if (o.chunk_bytes <= broker::kChunkHeaderBytes || o.chunk_bytes > (128u << 20)) {
    return InvalidArgument("chunk_bytes {} must be in ({}, 128 MiB]", o.chunk_bytes,
                           broker::kChunkHeaderBytes);
  }
  if (o.prefetch == 0) return InvalidArgument("prefetch must be >= 1");
  if (o.max_message_bytes == 0 || o.max_message_bytes > kDefaultMaxEnvelopeBytes) {
    return InvalidArgument("max_message_bytes {} must be in [1, {}] (the envelope limit)",
                           o.max_message_bytes, kDefaultMaxEnvelopeBytes);
  }
  if (o.max_incomplete_bytes_per_sender <= o.max_message_bytes ||
      o.max_incomplete_bytes < o.max_incomplete_bytes_per_sender) {
    return InvalidArgument(
        "need max_message_bytes ({}) < max_incomplete_bytes_per_sender ({}) <= "
        "max_incomplete_bytes ({})",
        o.max_message_bytes, o.max_incomplete_bytes_per_sender, o.max_incomplete_bytes);
  }
  if (o.queue_expiry <= o.reconnect_timeout) {  // or a queue could expire while we reconnect
    return InvalidArgument("queue_expiry must exceed reconnect_timeout");
  }
  return Status::Ok();
}

Result<AmqpUrl> ResolveUrl(const AmqpOptions& o) {
  P2P_ASSIGN_OR_RETURN(AmqpUrl url, ParseAmqpUrl(o.url));
  if (!url.tls && (o.tls_insecure || !o.tls_ca_file.empty())) {
    return InvalidArgument("TLS options given for a plain amqp:// URL; use amqps://");
  }
  if (!o.tls_ca_file.empty()) url.ca_file = o.tls_ca_file;
  if (o.tls_insecure) url.verify_peer = false;
  return url;
}

std::string QueueName(const std::string& run_id, int rank) {
  return fmt::format("p2p.{}.rank{}", run_id, rank);
}

amqp::Topology MakeTopology(const AmqpOptions& o) {
  amqp::Topology t;
  t.exchange = fmt::format("p2p.{}", o.run_id);
  t.queue = QueueName(o.run_id, o.rank);
  t.binding_keys.push_back(amqp::DirectKey(o.rank));
  for (int s = 0; s < o.size; ++s) {
    if (s != o.rank) t.binding_keys.push_back(amqp::BroadcastKey(s));
  }
  t.prefetch = o.prefetch;
  t.queue_expiry = o.queue_expiry;
  return t;
}

uint64_t NewIncarnation() {
  std::random_device rd;
  uint64_t v = 0;
  while (v == 0) v = (uint64_t{rd()} << 32) | rd();
  return v;
}

// Session::Open + topology, retried with backoff while the failure is transient (broker not up
// yet) until `deadline`; returns the last error then.
Result<amqp::Session> OpenWithRetry(const amqp::IoConfig& io, Deadline deadline) {
  amqp::Topology first = io.topology;
  first.purge = true;
  Backoff backoff;
  while (true) {
    Result<amqp::Session> s = amqp::OpenWithTopology(io.session, first, deadline);
    if (s.ok() || !IsRetryable(s.status()) || Clock::now() >= deadline) return s;
    // Bounded by the deadline; AMQP has no "broker is up" notification to wait for instead.
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff.Next(), deadline - Clock::now()));
  }
}

}  // namespace

Result<std::unique_ptr<AmqpTransport>> AmqpTransport::Create(AmqpOptions options) {
  P2P_RETURN_IF_ERROR(ValidateOptions(options));
  P2P_ASSIGN_OR_RETURN(AmqpUrl url, ResolveUrl(options));
  auto s = std::make_unique<State>();
  s->io.session.url = url;
  s->io.session.heartbeat_s = url.heartbeat_s.value_or(static_cast<int>(options.heartbeat.count()));
  s->io.session.rpc_timeout = options.rpc_timeout;
  s->io.topology = MakeTopology(options);
  s->io.rank = options.rank;
  s->io.size = options.size;
  s->io.incarnation = NewIncarnation();
  s->io.reassembly = {
      .max_message_bytes = options.max_message_bytes,
      .max_pending_bytes_per_sender = options.max_incomplete_bytes_per_sender,
      .max_pending_bytes = options.max_incomplete_bytes,
      // Chunks of one message keep arriving during a reconnect of either side only after it.
      .timeout = std::max(options.reassembly_timeout, 2 * options.reconnect_timeout)};
  s->io.reconnect_timeout = options.reconnect_timeout;
  s->shared.hello_from.assign(options.size, 0);
  s->options = std::move(options);
  return std::unique_ptr<AmqpTransport>(new AmqpTransport(std::move(s)));
}

AmqpTransport::AmqpTransport(std::unique_ptr<State> state) : s_(std::move(state)) {}

AmqpTransport::~AmqpTransport() { (void)Close(); }

int AmqpTransport::rank() const { return s_->options.rank; }
int AmqpTransport::size() const { return s_->options.size; }
const std::string& AmqpTransport::exchange_name() const { return s_->io.topology.exchange; }
std::string AmqpTransport::queue_name(int r) const { return QueueName(s_->options.run_id, r); }
uint64_t AmqpTransport::reconnects() const { return s_->shared.stats.reconnects.load(); }
uint64_t AmqpTransport::incomplete_bytes() const {
  return s_->shared.stats.incomplete_bytes.load();
}
TransportStats AmqpTransport::Stats() const { return s_->shared.stats.Snapshot(); }

Status AmqpTransport::Connect(Deadline deadline) {
  if (s_->closed) return InvalidArgument("AmqpTransport: Connect after Close");
  if (!s_->thread.joinable()) {
    P2P_ASSIGN_OR_RETURN(amqp::Session session, OpenWithRetry(s_->io, deadline));
    s_->thread = std::thread([this, session = std::move(session)]() mutable {
      amqp::IoThread(s_->io, s_->shared, std::move(session)).Run();
    });
  }
  P2P_RETURN_IF_ERROR(Enqueue({amqp::HelloBody(FrameKind::kHello, rank(), s_->io.incarnation)},
                              amqp::BroadcastKey(rank())));
  P2P_RETURN_IF_ERROR(WaitForPeers(deadline));
  s_->connected = true;
  return Status::Ok();
}

Status AmqpTransport::WaitForPeers(Deadline deadline) {
  amqp::Shared& sh = s_->shared;
  auto heard_all = [&] {
    for (int r = 0; r < size(); ++r) {
      if (r != rank() && sh.hello_from[r] == 0) return false;
    }
    return true;
  };
  std::unique_lock lock(sh.mu);
  sh.cv.wait_until(lock, deadline, [&] { return sh.exited || heard_all(); });
  if (!sh.failure.ok()) return sh.failure;
  if (heard_all()) return Status::Ok();
  std::string missing;
  for (int r = 0; r < size(); ++r) {
    if (r != rank() && sh.hello_from[r] == 0)
      missing += fmt::format("{}{}", missing.empty() ? "" : ",", r);
  }
  return Timeout(
      "Connect: no hello from rank(s) {} of run '{}' by the deadline; are they "
      "started with the same run id and broker URL?",
      missing, s_->options.run_id);
}

Status AmqpTransport::CheckUsable() const {
  if (s_->closed) return InvalidArgument("AmqpTransport: used after Close");
  if (!s_->connected) return InvalidArgument("AmqpTransport: Connect has not succeeded");
  return Status::Ok();
}

Status AmqpTransport::Send(int to_rank, std::span<const std::byte> msg) {
  P2P_RETURN_IF_ERROR(CheckUsable());
  if (to_rank < 0 || to_rank >= size() || to_rank == rank()) {
    return InvalidArgument("Send to rank {}: need another rank in [0, {})", to_rank, size());
  }
  broker::ChunkHeader h{FrameKind::kData, static_cast<uint32_t>(rank())};
  h.incarnation = s_->io.incarnation;
  h.seq = ++s_->next_seq;
  P2P_RETURN_IF_ERROR(
      Enqueue(broker::EncodeChunks(h, msg, s_->options.chunk_bytes), amqp::DirectKey(to_rank)));
  ++s_->shared.stats.messages_sent;
  return Status::Ok();
}

Status AmqpTransport::Broadcast(std::span<const std::byte> msg) {
  P2P_RETURN_IF_ERROR(CheckUsable());
  if (size() == 1) return Status::Ok();
  broker::ChunkHeader h{FrameKind::kData, static_cast<uint32_t>(rank())};
  h.incarnation = s_->io.incarnation;
  h.seq = ++s_->next_seq;
  P2P_RETURN_IF_ERROR(
      Enqueue(broker::EncodeChunks(h, msg, s_->options.chunk_bytes), amqp::BroadcastKey(rank())));
  ++s_->shared.stats.messages_sent;
  return Status::Ok();
}

Status AmqpTransport::Enqueue(std::vector<Bytes> bodies, const std::string& key) {
  uint64_t bytes = 0;
  for (const Bytes& b : bodies) bytes += b.size();
  amqp::Shared& sh = s_->shared;
  std::unique_lock lock(sh.mu);
  auto room = [&] {
    return sh.exited || sh.pending_bytes == 0 ||
           sh.pending_bytes + bytes <= s_->options.max_pending_bytes;
  };
  if (!sh.cv.wait_for(lock, s_->options.send_timeout, room)) {
    return Timeout("Send: {} bytes still unconfirmed by the broker after {} ms", sh.pending_bytes,
                   s_->options.send_timeout.count());
  }
  if (sh.exited) return sh.failure.ok() ? InvalidArgument("AmqpTransport: closed") : sh.failure;
  for (Bytes& b : bodies) sh.submitted.push_back({key, std::move(b)});
  sh.pending_bytes += bytes;
  sh.pending_chunks += bodies.size();
  lock.unlock();
  sh.wake.Notify();
  return Status::Ok();
}

Result<std::optional<Message>> AmqpTransport::Receive(Deadline deadline) {
  P2P_RETURN_IF_ERROR(CheckUsable());
  amqp::Shared& sh = s_->shared;
  std::unique_lock lock(sh.mu);
  sh.cv.wait_until(lock, deadline, [&] { return !sh.inbox.empty() || sh.exited; });
  if (!sh.inbox.empty()) {  // messages already received stay deliverable after a failure
    Message m = std::move(sh.inbox.front());
    sh.inbox.pop_front();
    return std::optional<Message>(std::move(m));
  }
  if (sh.exited) return sh.failure.ok() ? InvalidArgument("AmqpTransport: closed") : sh.failure;
  return std::optional<Message>();
}

Status AmqpTransport::Flush(Deadline deadline) {
  P2P_RETURN_IF_ERROR(CheckUsable());
  amqp::Shared& sh = s_->shared;
  std::unique_lock lock(sh.mu);
  sh.cv.wait_until(lock, deadline, [&] { return sh.pending_chunks == 0 || sh.exited; });
  if (sh.pending_chunks == 0) return Status::Ok();
  if (!sh.failure.ok()) return sh.failure;
  return Timeout("Flush: {} chunk(s) not yet confirmed by the broker", sh.pending_chunks);
}

Status AmqpTransport::Close() {
  if (s_->closed) return s_->close_status;
  s_->closed = true;
  if (s_->thread.joinable()) s_->close_status = StopIoThread();
  return s_->close_status;
}

// Asks the I/O thread to flush and say goodbye; if it is stuck (a write blocked by a broker that
// stopped reading), shuts its socket down so every rabbitmq-c call in it fails at once.
Status AmqpTransport::StopIoThread() {
  amqp::Shared& sh = s_->shared;
  const auto& o = s_->options;
  {
    std::unique_lock lock(sh.mu);
    sh.stop = true;
    sh.stop_deadline = Clock::now() + o.close_timeout;
    sh.cv.notify_all();
    sh.wake.Notify();
    auto grace = o.close_timeout + 3 * o.rpc_timeout;
    if (!sh.cv.wait_for(lock, grace, [&] { return sh.exited; }) && sh.socket_fd >= 0) {
      ::shutdown(sh.socket_fd, SHUT_RDWR);
    }
  }
  s_->thread.join();
  if (sh.failure.ok()) return sh.goodbye;
  return DeleteQueueAfterFailure();
}

// The I/O thread had died (e.g. gave up reconnecting): one bounded attempt to still remove our
// queue; x-expires removes it otherwise.
Status AmqpTransport::DeleteQueueAfterFailure() {
  Deadline deadline = Clock::now() + s_->options.close_timeout;
  Result<amqp::Session> session = amqp::Session::Open(s_->io.session, deadline);
  Status s = session.ok() ? session->DeleteQueue(s_->io.topology.queue) : session.status();
  if (session.ok()) (void)session->Close();
  if (s.ok()) return s_->shared.failure.Annotate("Close (queue deleted)");
  return s_->shared.failure.Annotate(
      fmt::format("Close: queue {} left for x-expires ({})", s_->io.topology.queue, s.message()));
}

}  // namespace p2p::broker
