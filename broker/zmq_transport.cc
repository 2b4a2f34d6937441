#include "broker/zmq_transport.h"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <random>
#include <set>

#include "broker/chunking.h"
#include "broker/envelope.h"
#include "broker/zmq_links.h"
#include "broker/zmq_util.h"

namespace p2p::broker {
namespace {

using zmq_util::Control;
using zmq_util::ControlKind;
using zmq_util::DecodeControl;
using zmq_util::EncodeControl;
using zmq_util::IsControlFrame;
using zmq_util::kMaxControlBytes;
using zmq_util::ParseRoutingId;
using zmq_util::RoutingId;

Status ValidateOptions(const ZmqTransportOptions& o) {
  if (o.size < 1 || o.size > kMaxRank + 1) return InvalidArgument("zmq: size {} invalid", o.size);
  if (o.rank < 0 || o.rank >= o.size) {
    return InvalidArgument("zmq: rank {} outside [0, {})", o.rank, o.size);
  }
  if (!o.endpoints.empty() && static_cast<int>(o.endpoints.size()) != o.size) {
    return InvalidArgument("zmq: {} endpoints for {} ranks", o.endpoints.size(), o.size);
  }
  if (o.endpoints.empty() && o.bind_endpoint.empty()) {
    return InvalidArgument("zmq: neither endpoints nor bind_endpoint given");
  }
  if (o.max_chunk_bytes == 0 || o.max_chunk_bytes > (size_t{1} << 30) || o.max_message_bytes == 0) {
    return InvalidArgument("zmq: chunk size {} / message limit {} invalid", o.max_chunk_bytes,
                           o.max_message_bytes);
  }
  if (o.max_pending_bytes <= o.max_message_bytes) {
    return InvalidArgument("zmq: max_pending_bytes {} must exceed max_message_bytes {}",
                           o.max_pending_bytes, o.max_message_bytes);
  }
  if (o.max_links_per_rank < 1) {
    return InvalidArgument("zmq: max_links_per_rank {} must be >= 1", o.max_links_per_rank);
  }
  if (o.hwm < 0 || o.linger.count() < 0 || o.send_timeout.count() < 0 ||
      o.heartbeat_interval.count() < 0 || o.heartbeat_timeout.count() < 0) {
    return InvalidArgument("zmq: negative hwm, linger, send timeout or heartbeat setting");
  }
  if (!o.run_id.empty()) P2P_RETURN_IF_ERROR(ValidateRunId(o.run_id));
  return Status::Ok();
}

uint64_t RandomU64() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

int Ms(std::chrono::milliseconds d) { return static_cast<int>(d.count()); }

// A run id read off the network, safe to log: bytes outside printable ASCII become '?' (a forged
// HELLO must not write control characters or fake lines into the log).
std::string Printable(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return out;
}

// Message::link of a link key (0 stays "no link").
uint64_t LinkToken(int key) { return static_cast<uint64_t>(key) + 1; }

}  // namespace

ReassemblyLimits ZmqReassemblyLimits(const ZmqTransportOptions& o) {
  ReassemblyLimits limits;
  limits.max_message_bytes = o.max_message_bytes;
  limits.max_pending_bytes = o.max_pending_bytes;
  // Per connection: room for one whole message and the start of the next, never the whole budget
  // unless the budget is that small.
  limits.max_pending_bytes_per_sender = std::min(o.max_pending_bytes, 2 * o.max_message_bytes);
  limits.timeout = o.reassembly_timeout;
  limits.drop_replays = false;  // a stream does not redeliver; the mailbox drops replays
  return limits;
}

// ---------------------------------------------------------------- Impl

struct ZmqTransport::Impl {
  explicit Impl(ZmqTransportOptions o)
      : options(std::move(o)),
        reassembler(ZmqReassemblyLimits(options)),
        links(options.size, options.max_links_per_rank),
        hello_from(options.size, false),
        ack_from(options.size, false),
        hello_sent(options.size, false) {
    reassembler.set_drop_observer([this](DropReason reason, uint32_t key) {
      const int rank = links.RankOf(static_cast<int>(key));
      LogDrop(DropReasonName(reason), rank,
              fmt::format("reassembly dropped a chunk or an incomplete message of a connection "
                          "claiming rank {} ({})",
                          rank, DropReasonName(reason)));
    });
  }

  zmq_util::SocketOptions BaseSocketOptions() const {
    zmq_util::SocketOptions s;
    s.linger_ms = Ms(options.linger);
    s.heartbeat_ivl_ms = Ms(options.heartbeat_interval);
    s.heartbeat_timeout_ms = Ms(options.heartbeat_timeout);
    s.hwm = options.hwm;
    return s;
  }

  Status Bind();
  Status CreateDealers();
  Status TrySendHello(int peer);
  Status DrainRouter();
  void HandleRouterFrame(const ZmqLink& link, const zmq::message_t& id,
                         const zmq::message_t& payload);
  void HandleHello(int from, const Control& c, const zmq::message_t& id);
  void AnswerHello(const zmq::message_t& id);
  Status CheckPeer(int peer, const Control& c, ControlKind want);
  void RejectFrame(const std::string& reason, int claimed_rank, const std::string& detail);
  void LogDrop(const std::string& reason, int claimed_rank, const std::string& detail);
  void AcceptChunk(const ZmqLink& link, std::span<const std::byte> bytes);
  void ForgetReplacedLinks();
  void ConfirmSender(int rank, uint64_t token);
  Status DrainDealer(int peer);
  bool AllConnected() const;
  Status ConnectTimeout() const;
  std::vector<zmq::message_t> BuildFrames(std::span<const std::byte> msg);
  Status SendFrames(int to, std::vector<zmq::message_t>& frames);
  void Reject(uint64_t n = 1) {
    other_rejected += n;
    SyncRejected();
  }
  void SyncRejected() { rejected = reassembler.rejected() + other_rejected; }

  ZmqTransportOptions options;
  zmq::context_t context{1};
  zmq::socket_t router;
  std::vector<zmq::socket_t> dealers;  // [rank]; this rank's own slot stays empty
  std::string bound;
  Reassembler reassembler;    // keyed by link (ZmqLink::key), not by rank
  ZmqLinkTable links;         // every connection heard on the ROUTER
  std::deque<Message> ready;  // whole messages not yet returned by Receive
  std::vector<bool> hello_from, ack_from, hello_sent;
  // First HELLO_ACK that disagreed on run id or size. Only ACKs end Connect: they come over the
  // connection this rank opened to the endpoint it was given. A HELLO comes from whoever can reach
  // the ROUTER, so an inconsistent one is only counted, logged and remembered for the timeout.
  Status mismatch;
  std::map<int, std::string> ignored_hello;      // claimed rank -> the last ignored HELLO, why
  std::set<std::pair<std::string, int>> logged;  // (reason, claimed rank) already logged
  // Drawn per transport so no one can predict (and take first) this rank's routing ids.
  const uint64_t routing_nonce = RandomU64();
  bool closed = false;
  // Random per transport, so a restarted rank's messages never mix with the chunks of its previous
  // incarnation that a receiver may still hold (the seq restarts at 1).
  const uint64_t incarnation = RandomU64();
  uint64_t next_seq = 1;
  uint64_t other_rejected = 0;
  std::atomic<uint64_t> bytes_sent{0}, bytes_received{0}, messages_sent{0}, messages_received{0},
      rejected{0};
};

Status ZmqTransport::Impl::Bind() {
  if (options.bind_endpoint.empty()) {
    P2P_ASSIGN_OR_RETURN(options.bind_endpoint, BindEndpointFor(options.endpoints[options.rank]));
  }
  try {
    router = zmq::socket_t(context, zmq::socket_type::router);
    zmq_util::SocketOptions so = BaseSocketOptions();
    so.max_message_bytes = static_cast<int64_t>(
        std::max(options.max_chunk_bytes + kChunkHeaderBytes, kMaxControlBytes));
    so.send_timeout_ms = 0;  // ROUTER only sends HELLO_ACKs, never blocking
    zmq_util::Configure(router, so);
    router.set(zmq::sockopt::router_mandatory, true);
    router.bind(options.bind_endpoint);
    bound = router.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return zmq_util::ErrorStatus(e, fmt::format("zmq: binding {}", options.bind_endpoint));
  }
  return Status::Ok();
}

Status ZmqTransport::Impl::CreateDealers() {
  if (!dealers.empty()) return Status::Ok();
  if (options.size == 1) {  // nobody to reach
    dealers.resize(1);
    return Status::Ok();
  }
  if (options.endpoints.empty()) return InvalidArgument("zmq: Connect before SetEndpoints");
  zmq_util::SocketOptions so = BaseSocketOptions();
  so.max_message_bytes = kMaxControlBytes;  // DEALERs only ever receive HELLO_ACKs
  so.send_timeout_ms = Ms(options.send_timeout);
  dealers.resize(options.size);
  for (int peer = 0; peer < options.size; ++peer) {
    if (peer == options.rank) continue;
    try {
      zmq::socket_t& d = dealers[peer] = zmq::socket_t(context, zmq::socket_type::dealer);
      zmq_util::Configure(d, so);
      d.set(zmq::sockopt::routing_id, RoutingId(options.rank, routing_nonce));
      d.set(zmq::sockopt::immediate, true);
      d.connect(options.endpoints[peer]);
    } catch (const zmq::error_t& e) {
      return zmq_util::ErrorStatus(
          e, fmt::format("zmq: connecting to rank {} at {}", peer, options.endpoints[peer]));
    }
  }
  return Status::Ok();
}

Status ZmqTransport::Impl::TrySendHello(int peer) {
  const Bytes hello = EncodeControl({ControlKind::kHello, static_cast<uint32_t>(options.rank),
                                     static_cast<uint32_t>(options.size), options.run_id});
  try {
    hello_sent[peer] =
        dealers[peer].send(zmq_util::ToMessage(hello), zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t& e) {
    return zmq_util::ErrorStatus(e, fmt::format("zmq: HELLO to rank {}", peer));
  }
  return Status::Ok();
}

Status ZmqTransport::Impl::CheckPeer(int peer, const Control& c, ControlKind want) {
  if (c.kind != want || c.rank != static_cast<uint32_t>(peer)) {
    return DataLoss("zmq: rank {} sent an unexpected control frame", peer);
  }
  if (c.size != static_cast<uint32_t>(options.size) || c.run_id != options.run_id) {
    return InvalidArgument("zmq: rank {} is in run '{}' of size {}, we are in run '{}' of size {}",
                           peer, Printable(c.run_id), c.size, options.run_id, options.size);
  }
  return Status::Ok();
}

// Counts a dropped frame and logs it once per reason and claimed rank (-1: no valid claim), so a
// flood of bad frames does not become a flood of log lines.
void ZmqTransport::Impl::RejectFrame(const std::string& reason, int claimed_rank,
                                     const std::string& detail) {
  Reject();
  LogDrop(reason, claimed_rank, detail);
}

// Logs a drop (already counted) once per reason and claimed rank.
void ZmqTransport::Impl::LogDrop(const std::string& reason, int claimed_rank,
                                 const std::string& detail) {
  if (logged.emplace(reason, claimed_rank).second) {
    spdlog::warn(
        "zmq: rank {} dropped a frame ({}): {}; further drops for this reason from this claimed "
        "sender are only counted (rejected_frames)",
        options.rank, reason, detail);
  }
}

// A HELLO is unauthenticated: anyone who can reach the ROUTER can send one claiming any rank. So
// an inconsistent HELLO never fails Connect (one forged packet would stop the run); it is
// counted, logged, remembered for the timeout report, and otherwise ignored.
void ZmqTransport::Impl::HandleHello(int from, const Control& c, const zmq::message_t& id) {
  const Status s = CheckPeer(from, c, ControlKind::kHello);
  if (s.code() == StatusCode::kDataLoss) {  // not a proper HELLO: no answer
    return RejectFrame("bad_hello", from,
                       fmt::format("a control frame on a connection claiming rank {} is not its "
                                   "HELLO (kind {}, rank {})",
                                   from, static_cast<int>(c.kind), c.rank));
  }
  if (!s.ok()) {
    ignored_hello[from] = std::string(s.message());
    RejectFrame("hello_mismatch", from,
                fmt::format("ignored a HELLO: {} (forged, or that peer is misconfigured; a real "
                            "mismatch also fails its own Connect)",
                            s.message()));
  } else {
    hello_from[from] = true;
  }
  // Answered even on a run/size mismatch: the ACK carries our run id and size, so a misconfigured
  // real peer's Connect fails fast instead of waiting for its deadline.
  AnswerHello(id);
}

void ZmqTransport::Impl::AnswerHello(const zmq::message_t& id) {
  const Bytes ack = EncodeControl({ControlKind::kHelloAck, static_cast<uint32_t>(options.rank),
                                   static_cast<uint32_t>(options.size), options.run_id});
  try {
    zmq::message_t to(id.data(), id.size());
    if (!router.send(to, zmq::send_flags::sndmore | zmq::send_flags::dontwait) ||
        !router.send(zmq_util::ToMessage(ack), zmq::send_flags::dontwait)) {
      Reject();  // peer at its HWM; it will time out in Connect
    }
  } catch (const zmq::error_t&) {
    Reject();  // EHOSTUNREACH: the peer left between its HELLO and our ACK
  }
}

void ZmqTransport::Impl::HandleRouterFrame(const ZmqLink& link, const zmq::message_t& id,
                                           const zmq::message_t& payload) {
  const auto bytes = zmq_util::AsBytes(payload);
  bytes_received += bytes.size();
  if (IsControlFrame(bytes)) {
    Result<Control> c = DecodeControl(bytes);
    if (!c.ok()) {
      return RejectFrame("bad_hello", link.rank, std::string(c.status().message()));
    }
    return HandleHello(link.rank, *c, id);
  }
  AcceptChunk(link, bytes);
}

// Decodes a data frame and hands it to the reassembler under the connection's key. The header's
// rank must be the one the connection's routing id claims (both are claims; they must agree).
void ZmqTransport::Impl::AcceptChunk(const ZmqLink& link, std::span<const std::byte> bytes) {
  Result<ChunkView> chunk = DecodeChunk(bytes, options.max_message_bytes);
  if (!chunk.ok()) {
    return RejectFrame("bad_chunk", link.rank, std::string(chunk.status().message()));
  }
  if (chunk->header.from_rank != static_cast<uint32_t>(link.rank)) {
    return RejectFrame("rank_mismatch", link.rank,
                       fmt::format("a chunk naming rank {} on a connection claiming rank {}",
                                   chunk->header.from_rank, link.rank));
  }
  Result<std::optional<Message>> whole = reassembler.Add(static_cast<uint32_t>(link.key), *chunk);
  SyncRejected();  // the drop observer logged any drop
  if (whole.ok() && whole->has_value()) {
    ready.push_back(Message{link.rank, std::move((*whole)->payload), LinkToken(link.key)});
    ++messages_received;
  }
}

// A connection the link table dropped for a newer one sends nothing more that counts: what the
// reassembler holds for it is freed now, not at the timeout.
void ZmqTransport::Impl::ForgetReplacedLinks() {
  for (int key : links.TakeReplaced()) reassembler.Forget(static_cast<uint32_t>(key));
}

// The connection `token` carried a message authenticated as `rank`: it becomes rank's proven link,
// and its reassembly is protected from unproven connections (broker/zmq_links.h).
void ZmqTransport::Impl::ConfirmSender(int rank, uint64_t token) {
  if (token == 0 || token > 0x80000000u) return;
  const int key = static_cast<int>(token - 1);
  if (links.RankOf(key) != rank) return;  // replaced meanwhile, or claims another rank
  const int demoted = links.Prove(key);
  if (demoted >= 0) reassembler.Protect(static_cast<uint32_t>(demoted), false);
  reassembler.Protect(static_cast<uint32_t>(key), true);
}

// Reads every frame queued on the ROUTER (at most a bounded batch, so Receive stays responsive).
Status ZmqTransport::Impl::DrainRouter() {
  constexpr int kMaxBatch = 4096;
  try {
    for (int i = 0; i < kMaxBatch; ++i) {
      zmq::message_t id, payload;
      if (!router.recv(id, zmq::recv_flags::dontwait)) return Status::Ok();
      bool well_formed =
          id.more() && router.recv(payload, zmq::recv_flags::dontwait) && !payload.more();
      while (payload.more()) {  // extra parts: read and discard the rest of this message
        well_formed = false;
        if (!router.recv(payload, zmq::recv_flags::dontwait)) break;
      }
      const int from = ParseRoutingId(zmq_util::AsBytes(id), options.size);
      if (from < 0 || from == options.rank) {
        RejectFrame("bad_routing_id", -1,
                    "a connection whose routing id is not another rank's (r<rank>-<nonce>)");
        continue;
      }
      if (!well_formed) {
        RejectFrame("multipart", from, "a multi-part message (the mesh sends single parts)");
        continue;
      }
      const std::string_view id_text(static_cast<const char*>(id.data()), id.size());
      const ZmqLink* link = links.Touch(id_text, from, Clock::now());
      ForgetReplacedLinks();
      if (link == nullptr) {
        RejectFrame("link_refused", from,
                    fmt::format("a new connection claiming rank {}, whose authenticated "
                                "connection is kept (max_links_per_rank {})",
                                from, options.max_links_per_rank));
        continue;
      }
      HandleRouterFrame(*link, id, payload);
    }
  } catch (const zmq::error_t& e) {
    return zmq_util::ErrorStatus(e, "zmq: receiving");
  }
  return Status::Ok();
}

Status ZmqTransport::Impl::DrainDealer(int peer) {
  try {
    zmq::message_t m;
    while (dealers[peer].recv(m, zmq::recv_flags::dontwait)) {
      Result<Control> c = DecodeControl(zmq_util::AsBytes(m));
      if (!c.ok()) {
        Reject();
        continue;
      }
      if (Status s = CheckPeer(peer, *c, ControlKind::kHelloAck); !s.ok()) {
        Reject();
        // The endpoint this rank was told to reach answered for another run: a configuration
        // error on one side, which waiting will not fix.
        if (s.code() == StatusCode::kInvalidArgument && mismatch.ok()) mismatch = s;
        continue;
      }
      ack_from[peer] = true;
    }
  } catch (const zmq::error_t& e) {
    return zmq_util::ErrorStatus(e, fmt::format("zmq: HELLO_ACK from rank {}", peer));
  }
  return Status::Ok();
}

bool ZmqTransport::Impl::AllConnected() const {
  for (int peer = 0; peer < options.size; ++peer) {
    if (peer != options.rank && !((hello_from[peer] || options.joining) && ack_from[peer])) {
      return false;
    }
  }
  return true;
}

Status ZmqTransport::Impl::ConnectTimeout() const {
  std::vector<int> missing, no_ack, no_hello;
  for (int peer = 0; peer < options.size; ++peer) {
    if (peer == options.rank) continue;
    if (!ack_from[peer]) no_ack.push_back(peer);
    if (!hello_from[peer]) no_hello.push_back(peer);
    if (!ack_from[peer] || !hello_from[peer]) missing.push_back(peer);
  }
  std::string ignored;
  for (const auto& [peer, why] : ignored_hello) ignored += fmt::format("; ignored: {}", why);
  return Timeout(
      "zmq connect: rank {} timed out waiting for ranks [{}] (no HELLO_ACK from [{}]; no HELLO "
      "from [{}]){}",
      options.rank, fmt::join(missing, ", "), fmt::join(no_ack, ", "), fmt::join(no_hello, ", "),
      ignored);
}

std::vector<zmq::message_t> ZmqTransport::Impl::BuildFrames(std::span<const std::byte> msg) {
  std::vector<zmq::message_t> frames;
  const ChunkHeader base{.kind = FrameKind::kData,
                         .from_rank = static_cast<uint32_t>(options.rank),
                         .incarnation = incarnation,
                         .seq = next_seq++};
  EncodeChunks(base, msg, options.max_chunk_bytes + kChunkHeaderBytes,
               [&frames](std::span<const std::byte> header, std::span<const std::byte> payload) {
                 frames.push_back(zmq_util::ToMessage(header, payload));
               });
  return frames;
}

// Sends `frames` to `to`. Frames are shared, not copied (zmq::message_t::copy is refcounted), so
// one set of frames serves a whole broadcast.
Status ZmqTransport::Impl::SendFrames(int to, std::vector<zmq::message_t>& frames) {
  try {
    for (zmq::message_t& frame : frames) {
      zmq::message_t shared;
      shared.copy(frame);
      if (!dealers[to].send(shared, zmq::send_flags::none)) {
        return Unavailable(
            "zmq send: rank {} did not take a frame within {} ms: it has died or stopped reading "
            "(check its log; the run cannot go on without it)",
            to, options.send_timeout.count());
      }
      bytes_sent += frame.size();
    }
  } catch (const zmq::error_t& e) {
    return zmq_util::ErrorStatus(e, fmt::format("zmq send to rank {}", to));
  }
  ++messages_sent;
  return Status::Ok();
}

// ---------------------------------------------------------------- ZmqTransport

ZmqTransport::ZmqTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ZmqTransport::~ZmqTransport() { (void)Close(); }

Result<std::unique_ptr<ZmqTransport>> ZmqTransport::Create(ZmqTransportOptions options) {
  P2P_RETURN_IF_ERROR(ValidateOptions(options));
  for (std::string& e : options.endpoints) {
    P2P_ASSIGN_OR_RETURN(e, NormalizeEndpoint(e));
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  P2P_RETURN_IF_ERROR(impl->Bind());
  return std::unique_ptr<ZmqTransport>(new ZmqTransport(std::move(impl)));
}

const std::string& ZmqTransport::bound_endpoint() const { return impl_->bound; }

Status ZmqTransport::SetEndpoints(std::vector<std::string> endpoints) {
  if (!impl_->dealers.empty()) return InvalidArgument("zmq: SetEndpoints after Connect");
  if (static_cast<int>(endpoints.size()) != size()) {
    return InvalidArgument("zmq: {} endpoints for {} ranks", endpoints.size(), size());
  }
  for (std::string& e : endpoints) {
    P2P_ASSIGN_OR_RETURN(e, NormalizeEndpoint(e));
  }
  impl_->options.endpoints = std::move(endpoints);
  return Status::Ok();
}

int ZmqTransport::rank() const { return impl_->options.rank; }
int ZmqTransport::size() const { return impl_->options.size; }

Status ZmqTransport::Connect(Deadline deadline) {
  Impl& m = *impl_;
  if (m.closed) return Unavailable("zmq: Connect after Close");
  P2P_RETURN_IF_ERROR(m.CreateDealers());
  while (true) {
    if (!m.mismatch.ok()) return m.mismatch;
    if (m.AllConnected()) return Status::Ok();
    if (Clock::now() >= deadline) return m.ConnectTimeout();
    // ROUTER: HELLOs (and early data). DEALER j: its HELLO_ACK; writable once connected.
    std::vector<zmq_pollitem_t> items{{m.router.handle(), 0, ZMQ_POLLIN, 0}};
    std::vector<int> peers{-1};
    for (int peer = 0; peer < size(); ++peer) {
      if (peer == rank() || m.ack_from[peer]) continue;
      const short events = m.hello_sent[peer] ? ZMQ_POLLIN : (ZMQ_POLLIN | ZMQ_POLLOUT);
      items.push_back({m.dealers[peer].handle(), 0, events, 0});
      peers.push_back(peer);
    }
    P2P_ASSIGN_OR_RETURN(int n, zmq_util::Poll(items, deadline));
    if (n == 0) continue;
    if (items[0].revents & ZMQ_POLLIN) P2P_RETURN_IF_ERROR(m.DrainRouter());
    for (size_t i = 1; i < items.size(); ++i) {
      if (items[i].revents & ZMQ_POLLOUT) P2P_RETURN_IF_ERROR(m.TrySendHello(peers[i]));
      if (items[i].revents & ZMQ_POLLIN) P2P_RETURN_IF_ERROR(m.DrainDealer(peers[i]));
    }
  }
}

Status ZmqTransport::Send(int to_rank, std::span<const std::byte> msg) {
  if (impl_->closed) return Unavailable("zmq: Send after Close");
  if (impl_->dealers.empty()) return InvalidArgument("zmq: Send before Connect");
  if (to_rank < 0 || to_rank >= size() || to_rank == rank()) {
    return InvalidArgument("zmq send: bad destination rank {} (size {}, self {})", to_rank, size(),
                           rank());
  }
  std::vector<zmq::message_t> frames = impl_->BuildFrames(msg);
  return impl_->SendFrames(to_rank, frames);
}

Status ZmqTransport::Broadcast(std::span<const std::byte> msg) {
  if (impl_->closed) return Unavailable("zmq: Broadcast after Close");
  if (impl_->dealers.empty()) return InvalidArgument("zmq: Broadcast before Connect");
  std::vector<zmq::message_t> frames = impl_->BuildFrames(msg);
  std::vector<int> gone;
  for (int peer = 0; peer < size(); ++peer) {
    if (peer == rank()) continue;
    Status s = impl_->SendFrames(peer, frames);
    if (s.code() == StatusCode::kUnavailable) {
      gone.push_back(peer);
    } else if (!s.ok()) {
      return s;
    }
  }
  if (gone.empty()) return Status::Ok();
  return Unavailable("zmq broadcast: ranks [{}] unreachable", fmt::join(gone, ", "));
}

Result<std::optional<Message>> ZmqTransport::Receive(Deadline deadline) {
  Impl& m = *impl_;
  if (m.closed) return Unavailable("zmq: Receive after Close");
  while (true) {
    if (!m.ready.empty()) {
      Message msg = std::move(m.ready.front());
      m.ready.pop_front();
      return std::optional<Message>(std::move(msg));
    }
    zmq_pollitem_t item{m.router.handle(), 0, ZMQ_POLLIN, 0};
    P2P_ASSIGN_OR_RETURN(int n, zmq_util::Poll(std::span(&item, 1), deadline));
    if (n > 0) P2P_RETURN_IF_ERROR(m.DrainRouter());
    m.reassembler.EvictStale(Clock::now());
    m.SyncRejected();
    if (m.ready.empty() && Clock::now() >= deadline) return std::optional<Message>();
  }
}

void ZmqTransport::ConfirmSender(int rank, uint64_t link) { impl_->ConfirmSender(rank, link); }

TransportStats ZmqTransport::Stats() const {
  TransportStats s;
  s.bytes_sent = impl_->bytes_sent;
  s.bytes_received = impl_->bytes_received;
  s.messages_sent = impl_->messages_sent;
  s.messages_received = impl_->messages_received;
  s.rejected = impl_->rejected;
  return s;
}

Status ZmqTransport::Close() {
  Impl& m = *impl_;
  if (m.closed) return Status::Ok();
  m.closed = true;
  try {
    for (zmq::socket_t& d : m.dealers) d.close();
    m.router.close();
    m.context.close();  // waits at most `linger` for queued frames to leave
  } catch (const zmq::error_t& e) {
    return zmq_util::ErrorStatus(e, "zmq: closing");
  }
  return Status::Ok();
}

}  // namespace p2p::broker
