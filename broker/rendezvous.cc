#include "broker/rendezvous.h"

#include <fmt/format.h>

#include <utility>

#include "broker/envelope.h"
#include "broker/rendezvous_log.h"
#include "broker/zmq_endpoint.h"
#include "broker/zmq_util.h"

namespace p2p::broker {
namespace {

using rendezvous::Registry;
using rendezvous::Request;

// ---------------------------------------------------------------- service loop

void SendReplies(zmq::socket_t& router, const Registry::Outbox& out) {
  for (const auto& [client, reply] : out) {
    try {
      zmq::message_t id(client.data(), client.size());
      if (router.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        (void)router.send(zmq_util::ToMessage(reply), zmq::send_flags::dontwait);
      }
    } catch (const zmq::error_t&) {
      // EHOSTUNREACH: that client is gone; it will retry or time out.
    }
  }
}

// The client's IP address, which the per-source limits key on. ZeroMQ attaches it to every
// message received over TCP (the ROUTER copies it onto the routing-id frame); other transports
// share one key.
std::string SourceOf(zmq::message_t& payload, zmq::message_t& id) {
  for (zmq::message_t* frame : {&payload, &id}) {
    if (frame->size() == 0 && frame != &id) continue;  // not received
    const char* address = zmq_msg_gets(frame->handle(), "Peer-Address");
    if (address != nullptr && *address != '\0') return address;
  }
  return "(non-tcp)";
}

rendezvous::Now NowForRegistry() {
  const auto wall = std::chrono::system_clock::now().time_since_epoch();
  return {Clock::now(), std::chrono::duration_cast<std::chrono::milliseconds>(wall).count()};
}

class Service {
 public:
  Service(zmq::socket_t& router, const RendezvousOptions& options)
      : router_(router),
        options_(options),
        registry_(options.limits, options.verifier),
        log_(options.log, options.log_interval) {}

  Status Run(std::atomic<bool>& stop) {
    while (!stop.load()) {
      zmq_pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
      P2P_ASSIGN_OR_RETURN(
          int n, zmq_util::Poll(std::span(&item, 1), Clock::now() + options_.stop_check_interval));
      if (n > 0) DrainRequests();
      for (const std::string& note : registry_.Expire(NowForRegistry())) log_.Event(note);
      const rendezvous::RegistryStats stats = registry_.stats();
      log_.Tick(Clock::now(), fmt::format("{} runs, {} registrations, {} addresses", stats.runs,
                                          stats.registrations, stats.sources));
      if (options_.on_stats) options_.on_stats(stats);
    }
    return Status::Ok();
  }

 private:
  // Handles every request queued on the ROUTER.
  void DrainRequests() {
    while (true) {
      zmq::message_t id, payload;
      if (!router_.recv(id, zmq::recv_flags::dontwait)) return;
      bool single =
          id.more() && router_.recv(payload, zmq::recv_flags::dontwait) && !payload.more();
      while (payload.more() && router_.recv(payload, zmq::recv_flags::dontwait)) single = false;
      const std::string client(static_cast<const char*>(id.data()), id.size());
      const std::string source = SourceOf(payload, id);
      Result<Request> req =
          single ? rendezvous::DecodeRequest(zmq_util::AsBytes(payload), options_.max_size)
                 : Result<Request>(InvalidArgument("rendezvous: multipart request"));
      Registry::Outcome out = registry_.Handle(client, source, req, NowForRegistry());
      SendReplies(router_, out.replies);
      if (!out.reason.empty()) log_.Refused(source, out.reason, out.message);
      for (const std::string& note : out.notes) log_.Event(note);
    }
  }

  zmq::socket_t& router_;
  const RendezvousOptions& options_;
  Registry registry_;
  rendezvous::ServiceLog log_;
};

Result<Bytes> SignedRequest(Request request, const RegistrationSigner* signer) {
  if (signer != nullptr) {
    request.key_id = signer->key_id;
    request.unix_ms = static_cast<uint64_t>(NowForRegistry().unix_ms);
    P2P_ASSIGN_OR_RETURN(request.signature, signer->sign(rendezvous::SigningBytes(request)));
    if (request.key_id.size() != rendezvous::kKeyIdBytes || request.signature.empty() ||
        request.signature.size() > rendezvous::kMaxSignatureBytes) {
      return InvalidArgument("rendezvous: key id of {} bytes or signature of {} bytes unusable",
                             request.key_id.size(), request.signature.size());
    }
  }
  return rendezvous::EncodeRequest(request);
}

}  // namespace

Status RunRendezvous(const RendezvousOptions& options, std::atomic<bool>& stop) {
  if (options.max_size < 1 || options.max_size > kMaxRank + 1) {
    return InvalidArgument("rendezvous: max_size {} invalid", options.max_size);
  }
  const rendezvous::Limits& l = options.limits;
  if (l.max_runs < 1 || l.max_registrations < 1 || l.max_per_source < 1 ||
      l.max_sources <= l.max_registrations || !(l.requests_per_second > 0) || !(l.burst >= 1)) {
    return InvalidArgument(
        "rendezvous: limits must be positive, the burst at least 1 and the tracked addresses "
        "more than the registrations");
  }
  try {
    zmq::context_t context(1);
    zmq::socket_t router(context, zmq::socket_type::router);
    zmq_util::SocketOptions so;
    so.max_message_bytes = rendezvous::kMaxRequestBytes;
    so.heartbeat_ivl_ms = 0;  // clients are short-lived
    zmq_util::Configure(router, so);
    router.set(zmq::sockopt::router_mandatory, true);
    router.bind(options.bind);
    if (options.on_bound) options.on_bound(router.get(zmq::sockopt::last_endpoint));
    Service service(router, options);
    return service.Run(stop);
  } catch (const zmq::error_t& e) {
    return zmq_util::ErrorStatus(e, fmt::format("rendezvous on {}", options.bind));
  }
}

Result<std::vector<std::string>> RegisterWithRendezvous(const std::string& url,
                                                        const std::string& run_id, int rank,
                                                        int size, const std::string& my_endpoint,
                                                        Deadline deadline,
                                                        const RegistrationSigner* signer) {
  P2P_ASSIGN_OR_RETURN(std::string service, NormalizeEndpoint(url));
  P2P_RETURN_IF_ERROR(ValidateRunId(run_id));
  if (size < 1 || size > kMaxRank + 1 || rank < 0 || rank >= size) {
    return InvalidArgument("rendezvous: rank {} / size {} invalid", rank, size);
  }
  P2P_ASSIGN_OR_RETURN(std::string endpoint, NormalizeEndpoint(my_endpoint));
  Request request;
  request.run_id = run_id;
  request.rank = rank;
  request.size = size;
  request.endpoint = endpoint;
  P2P_ASSIGN_OR_RETURN(Bytes encoded, SignedRequest(std::move(request), signer));
  try {
    zmq::context_t context(1);
    zmq::socket_t dealer(context, zmq::socket_type::dealer);
    zmq_util::SocketOptions so;
    so.linger_ms = 0;
    so.max_message_bytes = rendezvous::kMaxReplyBytes;
    so.heartbeat_ivl_ms = 0;
    zmq_util::Configure(dealer, so);
    dealer.connect(service);
    (void)dealer.send(zmq_util::ToMessage(encoded),
                      zmq::send_flags::dontwait);  // queued until the connection is up
    zmq_pollitem_t item{dealer.handle(), 0, ZMQ_POLLIN, 0};
    P2P_ASSIGN_OR_RETURN(int n, zmq_util::Poll(std::span(&item, 1), deadline));
    if (n == 0) {
      return Timeout("rendezvous at {}: run '{}' not complete by the deadline", service, run_id);
    }
    zmq::message_t m;
    (void)dealer.recv(m, zmq::recv_flags::none);
    P2P_ASSIGN_OR_RETURN(rendezvous::Reply reply,
                         rendezvous::DecodeReply(zmq_util::AsBytes(m), size));
    if (!reply.ok) return InvalidArgument("rendezvous refused rank {}: {}", rank, reply.error);
    return std::move(reply.endpoints);
  } catch (const zmq::error_t& e) {
    return zmq_util::ErrorStatus(e, fmt::format("rendezvous at {}", service));
  }
}

}  // namespace p2p::broker
