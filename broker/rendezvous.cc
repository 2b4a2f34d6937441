#include "broker/rendezvous.h"

#include <map>
#include <msgpack.hpp>
#include <utility>

#include "broker/envelope.h"
#include "broker/rendezvous_wire.h"
#include "broker/zmq_endpoint.h"
#include "broker/zmq_util.h"

namespace p2p::broker {
namespace {

constexpr uint64_t kRendezvousVersion = 1;
constexpr size_t kMaxRequestBytes = 4096;
constexpr size_t kMaxReplyBytes = size_t{16} << 20;
constexpr size_t kMaxErrorBytes = 1024;

struct Request {
  std::string run_id;
  int rank = 0;
  int size = 0;
  std::string endpoint;
};

struct Reply {
  bool ok = false;
  std::string error;
  std::vector<std::string> endpoints;
};

// ---------------------------------------------------------------- msgpack helpers

using Packer = msgpack::packer<msgpack::sbuffer>;

Packer& PackStr(Packer& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  return pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

Bytes ToBytes(const msgpack::sbuffer& buf) {
  const auto* p = reinterpret_cast<const std::byte*>(buf.data());
  return Bytes(p, p + buf.size());
}

// Unpacks untrusted bytes into `handle` under `limits`; DataLoss instead of an exception.
Status Unpack(std::span<const std::byte> data, const msgpack::unpack_limit& limits,
              msgpack::object_handle& handle) {
  try {
    size_t offset = 0;
    handle = msgpack::unpack(reinterpret_cast<const char*>(data.data()), data.size(), offset,
                             nullptr, nullptr, limits);
    if (offset != data.size()) return DataLoss("rendezvous: trailing bytes");
    if (handle.get().type != msgpack::type::MAP) return InvalidArgument("rendezvous: not a map");
  } catch (const std::exception& e) {
    return DataLoss("rendezvous: malformed message ({})", e.what());
  }
  return Status::Ok();
}

const msgpack::object* Find(const msgpack::object& map, std::string_view key) {
  for (uint32_t i = 0; i < map.via.map.size; ++i) {
    const msgpack::object& k = map.via.map.ptr[i].key;
    if (k.type == msgpack::type::STR && std::string_view(k.via.str.ptr, k.via.str.size) == key) {
      return &map.via.map.ptr[i].val;
    }
  }
  return nullptr;
}

Result<std::string> GetString(const msgpack::object& map, std::string_view key, size_t max) {
  const msgpack::object* o = Find(map, key);
  if (o == nullptr || o->type != msgpack::type::STR || o->via.str.size > max) {
    return InvalidArgument("rendezvous: field '{}' missing, not a string or over {} bytes", key,
                           max);
  }
  return std::string(o->via.str.ptr, o->via.str.size);
}

Result<uint64_t> GetUint(const msgpack::object& map, std::string_view key, uint64_t max) {
  const msgpack::object* o = Find(map, key);
  if (o == nullptr || o->type != msgpack::type::POSITIVE_INTEGER || o->via.u64 > max) {
    return InvalidArgument("rendezvous: field '{}' missing, not an integer or over {}", key, max);
  }
  return o->via.u64;
}

// ---------------------------------------------------------------- messages

Bytes EncodeRequest(const Request& r) {
  msgpack::sbuffer buf;
  Packer pk(buf);
  pk.pack_map(6);
  PackStr(pk, "v").pack_uint64(kRendezvousVersion);
  PackStr(PackStr(pk, "op"), "register");
  PackStr(PackStr(pk, "run"), r.run_id);
  PackStr(pk, "rank").pack_int32(r.rank);
  PackStr(pk, "size").pack_int32(r.size);
  PackStr(PackStr(pk, "endpoint"), r.endpoint);
  return ToBytes(buf);
}

Result<Request> DecodeRequest(std::span<const std::byte> data, int max_size) {
  msgpack::object_handle h;
  P2P_RETURN_IF_ERROR(Unpack(data, msgpack::unpack_limit(0, 8, kMaxEndpointBytes, 0, 0, 1), h));
  const msgpack::object& m = h.get();
  P2P_ASSIGN_OR_RETURN(uint64_t version, GetUint(m, "v", UINT32_MAX));
  if (version != kRendezvousVersion) {
    return InvalidArgument("rendezvous: unsupported version {}", version);
  }
  P2P_ASSIGN_OR_RETURN(std::string op, GetString(m, "op", 16));
  if (op != "register") return InvalidArgument("rendezvous: unknown op '{}'", op);
  Request r;
  P2P_ASSIGN_OR_RETURN(r.run_id, GetString(m, "run", kMaxRunIdBytes));
  P2P_RETURN_IF_ERROR(ValidateRunId(r.run_id));
  P2P_ASSIGN_OR_RETURN(uint64_t size, GetUint(m, "size", static_cast<uint64_t>(max_size)));
  P2P_ASSIGN_OR_RETURN(uint64_t rank, GetUint(m, "rank", size == 0 ? 0 : size - 1));
  if (size == 0) return InvalidArgument("rendezvous: size 0");
  r.size = static_cast<int>(size);
  r.rank = static_cast<int>(rank);
  P2P_ASSIGN_OR_RETURN(std::string endpoint, GetString(m, "endpoint", kMaxEndpointBytes));
  P2P_ASSIGN_OR_RETURN(r.endpoint, NormalizeEndpoint(endpoint));
  return r;
}

Bytes EncodeReply(const Reply& r) {
  msgpack::sbuffer buf;
  Packer pk(buf);
  pk.pack_map(3);
  PackStr(pk, "v").pack_uint64(kRendezvousVersion);
  PackStr(pk, "ok");
  r.ok ? pk.pack_true() : pk.pack_false();
  if (r.ok) {
    PackStr(pk, "endpoints").pack_array(static_cast<uint32_t>(r.endpoints.size()));
    for (const std::string& e : r.endpoints) PackStr(pk, e);
  } else {
    PackStr(PackStr(pk, "error"), r.error.substr(0, kMaxErrorBytes));
  }
  return ToBytes(buf);
}

Result<Reply> DecodeReply(std::span<const std::byte> data, int size) {
  msgpack::object_handle h;
  const msgpack::unpack_limit limits(static_cast<size_t>(size), 4, kMaxErrorBytes, 0, 0, 2);
  P2P_RETURN_IF_ERROR(Unpack(data, limits, h));
  const msgpack::object& m = h.get();
  const msgpack::object* ok = Find(m, "ok");
  if (ok == nullptr || ok->type != msgpack::type::BOOLEAN) {
    return InvalidArgument("rendezvous reply: no 'ok'");
  }
  Reply r{ok->via.boolean, {}, {}};
  if (!r.ok) {
    P2P_ASSIGN_OR_RETURN(r.error, GetString(m, "error", kMaxErrorBytes));
    return r;
  }
  const msgpack::object* list = Find(m, "endpoints");
  if (list == nullptr || list->type != msgpack::type::ARRAY ||
      list->via.array.size != static_cast<uint32_t>(size)) {
    return InvalidArgument("rendezvous reply: endpoint list missing or not of {} entries", size);
  }
  for (uint32_t i = 0; i < list->via.array.size; ++i) {
    const msgpack::object& e = list->via.array.ptr[i];
    if (e.type != msgpack::type::STR)
      return InvalidArgument("rendezvous reply: bad endpoint {}", i);
    P2P_ASSIGN_OR_RETURN(std::string endpoint,
                         NormalizeEndpoint(std::string_view(e.via.str.ptr, e.via.str.size)));
    r.endpoints.push_back(std::move(endpoint));
  }
  return r;
}

// ---------------------------------------------------------------- registry

// The runs being assembled. Single-threaded (the service loop owns it).
class Registry {
 public:
  using Outbox = std::vector<std::pair<std::string, Bytes>>;  // (client routing id, reply)

  explicit Registry(const RendezvousOptions& options) : options_(options) {}

  Outbox Register(const std::string& client, const Request& req, Clock::time_point now) {
    Result<Run*> run = FindOrCreate(req, now);
    if (!run.ok()) return Error(client, run.status());
    Run& r = **run;
    if (r.size != req.size) {
      return Error(client, InvalidArgument("run '{}' has size {}, rank {} registered with size {}",
                                           req.run_id, r.size, req.rank, req.size));
    }
    std::string& slot = r.endpoints[req.rank];
    if (!slot.empty() && slot != req.endpoint) {
      return Error(client, InvalidArgument("rank {} of run '{}' is already registered at {}",
                                           req.rank, req.run_id, slot));
    }
    const bool was_complete = r.registered == r.size;
    if (slot.empty()) ++r.registered;
    slot = req.endpoint;
    r.clients[req.rank] = client;
    r.touched = now;
    if (r.registered < r.size) return {};
    const Bytes reply = EncodeReply({true, {}, r.endpoints});
    if (was_complete) return {{client, reply}};  // a retry after completion
    Outbox out;
    for (const std::string& c : r.clients) out.emplace_back(c, reply);
    return out;
  }

  void Expire(Clock::time_point now) {
    std::erase_if(runs_,
                  [&](const auto& kv) { return now - kv.second.touched > options_.run_ttl; });
  }

  static Outbox Error(const std::string& client, const Status& s) {
    return {{client, EncodeReply({false, s.message(), {}})}};
  }

 private:
  struct Run {
    int size = 0;
    int registered = 0;
    std::vector<std::string> endpoints;  // [rank]; empty = not yet registered
    std::vector<std::string> clients;    // [rank]; latest routing id of that rank
    Clock::time_point touched;
  };

  Result<Run*> FindOrCreate(const Request& req, Clock::time_point now) {
    auto it = runs_.find(req.run_id);
    if (it != runs_.end()) return &it->second;
    Expire(now);
    if (runs_.size() >= options_.max_runs) {
      return Unavailable("rendezvous holds {} runs already", runs_.size());
    }
    Run& r = runs_[req.run_id];
    r.size = req.size;
    r.endpoints.resize(req.size);
    r.clients.resize(req.size);
    r.touched = now;
    return &r;
  }

  const RendezvousOptions& options_;
  std::map<std::string, Run> runs_;
};

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

// Handles every request queued on the ROUTER.
void DrainRequests(zmq::socket_t& router, Registry& registry, int max_size) {
  while (true) {
    zmq::message_t id, payload;
    if (!router.recv(id, zmq::recv_flags::dontwait)) return;
    bool single = id.more() && router.recv(payload, zmq::recv_flags::dontwait) && !payload.more();
    while (payload.more() && router.recv(payload, zmq::recv_flags::dontwait)) single = false;
    const std::string client(static_cast<const char*>(id.data()), id.size());
    Result<Request> req = single
                              ? DecodeRequest(zmq_util::AsBytes(payload), max_size)
                              : Result<Request>(InvalidArgument("rendezvous: multipart request"));
    SendReplies(router, req.ok() ? registry.Register(client, *req, Clock::now())
                                 : Registry::Error(client, req.status()));
  }
}

Status Serve(zmq::socket_t& router, const RendezvousOptions& options, std::atomic<bool>& stop) {
  Registry registry(options);
  while (!stop.load()) {
    zmq_pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
    P2P_ASSIGN_OR_RETURN(
        int n, zmq_util::Poll(std::span(&item, 1), Clock::now() + options.stop_check_interval));
    if (n > 0) DrainRequests(router, registry, options.max_size);
    registry.Expire(Clock::now());
  }
  return Status::Ok();
}

}  // namespace

Status RunRendezvous(const RendezvousOptions& options, std::atomic<bool>& stop) {
  if (options.max_size < 1 || options.max_size > kMaxRank + 1) {
    return InvalidArgument("rendezvous: max_size {} invalid", options.max_size);
  }
  try {
    zmq::context_t context(1);
    zmq::socket_t router(context, zmq::socket_type::router);
    zmq_util::SocketOptions so;
    so.max_message_bytes = kMaxRequestBytes;
    so.heartbeat_ivl_ms = 0;  // clients are short-lived
    zmq_util::Configure(router, so);
    router.set(zmq::sockopt::router_mandatory, true);
    router.bind(options.bind);
    if (options.on_bound) options.on_bound(router.get(zmq::sockopt::last_endpoint));
    return Serve(router, options, stop);
  } catch (const zmq::error_t& e) {
    return zmq_util::ErrorStatus(e, fmt::format("rendezvous on {}", options.bind));
  }
}

Result<std::vector<std::string>> RegisterWithRendezvous(const std::string& url,
                                                        const std::string& run_id, int rank,
                                                        int size, const std::string& my_endpoint,
                                                        Deadline deadline) {
  P2P_ASSIGN_OR_RETURN(std::string service, NormalizeEndpoint(url));
  P2P_RETURN_IF_ERROR(ValidateRunId(run_id));
  if (size < 1 || size > kMaxRank + 1 || rank < 0 || rank >= size) {
    return InvalidArgument("rendezvous: rank {} / size {} invalid", rank, size);
  }
  P2P_ASSIGN_OR_RETURN(std::string endpoint, NormalizeEndpoint(my_endpoint));
  try {
    zmq::context_t context(1);
    zmq::socket_t dealer(context, zmq::socket_type::dealer);
    zmq_util::SocketOptions so;
    so.linger_ms = 0;
    so.max_message_bytes = kMaxReplyBytes;
    so.heartbeat_ivl_ms = 0;
    zmq_util::Configure(dealer, so);
    dealer.connect(service);
    (void)dealer.send(zmq_util::ToMessage(EncodeRequest({run_id, rank, size, endpoint})),
                      zmq::send_flags::dontwait);  // queued until the connection is up
    zmq_pollitem_t item{dealer.handle(), 0, ZMQ_POLLIN, 0};
    P2P_ASSIGN_OR_RETURN(int n, zmq_util::Poll(std::span(&item, 1), deadline));
    if (n == 0) {
      return Timeout("rendezvous at {}: run '{}' not complete by the deadline", service, run_id);
    }
    zmq::message_t m;
    (void)dealer.recv(m, zmq::recv_flags::none);
    P2P_ASSIGN_OR_RETURN(Reply reply, DecodeReply(zmq_util::AsBytes(m), size));
    if (!reply.ok) return InvalidArgument("rendezvous refused rank {}: {}", rank, reply.error);
    return std::move(reply.endpoints);
  } catch (const zmq::error_t& e) {
    return zmq_util::ErrorStatus(e, fmt::format("rendezvous at {}", service));
  }
}

namespace rendezvous_wire {

Bytes EncodeRegisterRequest(const std::string& run_id, int rank, int size,
                            const std::string& endpoint) {
  return EncodeRequest({run_id, rank, size, endpoint});
}
Bytes EncodeOkReply(const std::vector<std::string>& endpoints) {
  return EncodeReply({true, {}, endpoints});
}
Bytes EncodeErrorReply(const std::string& error) { return EncodeReply({false, error, {}}); }
Status CheckRequest(std::span<const std::byte> data, int max_size) {
  return DecodeRequest(data, max_size).status();
}
Status CheckReply(std::span<const std::byte> data, int size) {
  return DecodeReply(data, size).status();
}

}  // namespace rendezvous_wire

}  // namespace p2p::broker
