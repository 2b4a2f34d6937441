#include "peer/transport_factory.h"

#include <unistd.h>

#include <algorithm>
#include <climits>

#include "broker/amqp_transport.h"
#include "broker/rendezvous.h"
#include "broker/zmq_endpoint.h"
#include "broker/zmq_transport.h"

namespace p2p::peer {
namespace {

std::chrono::milliseconds PeerTimeout(const PeerOptions& o) {
  return std::chrono::milliseconds(static_cast<int64_t>(o.peer_timeout_s * 1000.0));
}

std::string Hostname() {
  char name[HOST_NAME_MAX + 1] = {};
  return ::gethostname(name, sizeof(name)) == 0 ? name : "localhost";
}

// "tcp://0.0.0.0:41235" bound on all interfaces -> "tcp://<advertise>:41235" for the others.
Result<std::string> AdvertisedEndpoint(const std::string& bound, const std::string& host) {
  if (bound.rfind("tcp://", 0) != 0) return bound;  // ipc paths are already what others use
  const size_t colon = bound.rfind(':');
  if (colon == std::string::npos) return Internal("bound endpoint '{}' has no port", bound);
  return "tcp://" + host + bound.substr(colon);
}

Result<std::unique_ptr<broker::Transport>> CreateZmq(const PeerOptions& o, int rank, int size,
                                                     broker::Deadline deadline,
                                                     const broker::RegistrationSigner* signer) {
  broker::ZmqTransportOptions z;
  z.rank = rank;
  z.size = size;
  z.run_id = o.run_id;
  z.joining = o.join;
  // A peer that stops draining (dead, hung) must fail the run within --peer-timeout. With
  // heartbeats, well within it: a send blocked on a dead rank holds up this peer's heartbeats to
  // the living, who must not suspect us meanwhile.
  z.send_timeout = o.heartbeat_s > 0 ? PeerTimeout(o) / 4 : PeerTimeout(o);
  z.heartbeat_timeout = std::min(z.heartbeat_timeout, PeerTimeout(o));
  if (!o.peers.empty() && !o.rendezvous.empty()) {
    return InvalidArgument("--peers and --rendezvous exclude each other; give one");
  }
  if (!o.peers.empty()) {
    auto endpoints = broker::ParsePeerList(o.peers);
    if (!endpoints.ok()) return endpoints.status().Annotate("--peers");
    if (static_cast<int>(endpoints->size()) != size) {
      return InvalidArgument("--peers lists {} endpoints but --size is {}; give one per rank",
                             endpoints->size(), size);
    }
    z.endpoints = std::move(*endpoints);
    P2P_ASSIGN_OR_RETURN(auto t, broker::ZmqTransport::Create(std::move(z)));
    return std::unique_ptr<broker::Transport>(std::move(t));
  }
  if (o.rendezvous.empty()) {
    if (size == 1) {
      z.endpoints = {"ipc:///tmp/p2ptrain-" + std::to_string(::getpid()) + ".sock"};
      P2P_ASSIGN_OR_RETURN(auto t, broker::ZmqTransport::Create(std::move(z)));
      return std::unique_ptr<broker::Transport>(std::move(t));
    }
    return InvalidArgument(
        "--transport zmq needs --peers host:port,... (one per rank) or --rendezvous HOST:PORT "
        "of a `p2ptrain broker`");
  }
  std::string bind = o.bind;
  if (bind.ends_with(":0")) bind = bind.substr(0, bind.size() - 1) + "*";
  z.bind_endpoint = bind;
  P2P_ASSIGN_OR_RETURN(auto t, broker::ZmqTransport::Create(std::move(z)));
  P2P_ASSIGN_OR_RETURN(
      const std::string mine,
      AdvertisedEndpoint(t->bound_endpoint(), o.advertise.empty() ? Hostname() : o.advertise));
  auto endpoints =
      broker::RegisterWithRendezvous(o.rendezvous, o.run_id, rank, size, mine, deadline, signer);
  if (!endpoints.ok()) {
    return endpoints.status().Annotate(
        fmt::format("registering with the rendezvous {}", o.rendezvous));
  }
  P2P_RETURN_IF_ERROR(t->SetEndpoints(std::move(*endpoints)));
  return std::unique_ptr<broker::Transport>(std::move(t));
}

}  // namespace

Result<std::unique_ptr<broker::Transport>> CreateTransport(
    const PeerOptions& o, int rank, int size, broker::Deadline deadline,
    const broker::RegistrationSigner* signer) {
  if (o.transport == "zmq") return CreateZmq(o, rank, size, deadline, signer);
  if (o.transport == "amqp") {
    broker::AmqpOptions a;
    a.url = o.broker_url;
    a.run_id = o.run_id;
    a.rank = rank;
    a.size = size;
    a.tls_ca_file = o.tls_ca;
    a.tls_insecure = o.tls_insecure;
    a.send_timeout = PeerTimeout(o);
    a.reconnect_timeout = PeerTimeout(o);
    // The queue of a peer that died (kill -9 cannot clean up) disappears on its own this long
    // after its last consumer left; live peers are far inside this window.
    a.queue_expiry =
        std::max<std::chrono::milliseconds>(2 * PeerTimeout(o), std::chrono::seconds(30));
    P2P_ASSIGN_OR_RETURN(auto t, broker::AmqpTransport::Create(std::move(a)));
    return std::unique_ptr<broker::Transport>(std::move(t));
  }
  return InvalidArgument("unknown --transport '{}'; valid: zmq, amqp", o.transport);
}

}  // namespace p2p::peer
