#include "broker/rendezvous_wire.h"

#include <msgpack.hpp>
#include <utility>

#include "broker/envelope.h"
#include "broker/zmq_endpoint.h"

namespace p2p::broker::rendezvous {
namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

Packer& PackStr(Packer& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  return pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

Packer& PackBin(Packer& pk, std::span<const std::byte> b) {
  pk.pack_bin(static_cast<uint32_t>(b.size()));
  return pk.pack_bin_body(reinterpret_cast<const char*>(b.data()), static_cast<uint32_t>(b.size()));
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

Result<Bytes> GetBin(const msgpack::object& map, std::string_view key, size_t min, size_t max) {
  const msgpack::object* o = Find(map, key);
  if (o == nullptr || o->type != msgpack::type::BIN || o->via.bin.size < min ||
      o->via.bin.size > max) {
    return InvalidArgument("rendezvous: field '{}' missing, not bytes or not {}..{} bytes", key,
                           min, max);
  }
  const auto* p = reinterpret_cast<const std::byte*>(o->via.bin.ptr);
  return Bytes(p, p + o->via.bin.size);
}

// The optional signature: "key", "ts" and "sig" together, or none of them.
Status DecodeSignature(const msgpack::object& m, Request& r) {
  const int present =
      (Find(m, "key") != nullptr) + (Find(m, "ts") != nullptr) + (Find(m, "sig") != nullptr);
  if (present == 0) return Status::Ok();
  if (present != 3) return InvalidArgument("rendezvous: 'key', 'ts' and 'sig' go together");
  P2P_ASSIGN_OR_RETURN(r.key_id, GetBin(m, "key", kKeyIdBytes, kKeyIdBytes));
  P2P_ASSIGN_OR_RETURN(r.unix_ms, GetUint(m, "ts", INT64_MAX));
  P2P_ASSIGN_OR_RETURN(r.signature, GetBin(m, "sig", 1, kMaxSignatureBytes));
  return Status::Ok();
}

void AppendU32(Bytes& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}

void AppendU64(Bytes& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}

void AppendString(Bytes& out, std::span<const std::byte> s) {
  AppendU32(out, static_cast<uint32_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}

std::span<const std::byte> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace

Bytes EncodeRequest(const Request& r) {
  msgpack::sbuffer buf;
  Packer pk(buf);
  pk.pack_map(r.is_signed() ? 9 : 6);
  PackStr(pk, "v").pack_uint64(kVersion);
  PackStr(PackStr(pk, "op"), "register");
  PackStr(PackStr(pk, "run"), r.run_id);
  PackStr(pk, "rank").pack_int32(r.rank);
  PackStr(pk, "size").pack_int32(r.size);
  PackStr(PackStr(pk, "endpoint"), r.endpoint);
  if (r.is_signed()) {
    PackBin(PackStr(pk, "key"), r.key_id);
    PackStr(pk, "ts").pack_uint64(r.unix_ms);
    PackBin(PackStr(pk, "sig"), r.signature);
  }
  return ToBytes(buf);
}

Result<Request> DecodeRequest(std::span<const std::byte> data, int max_size) {
  if (data.size() > kMaxRequestBytes) {
    return InvalidArgument("rendezvous: request of {} bytes (limit {})", data.size(),
                           kMaxRequestBytes);
  }
  msgpack::object_handle h;
  const msgpack::unpack_limit limits(0, 9, kMaxEndpointBytes, kMaxSignatureBytes, 0, 1);
  P2P_RETURN_IF_ERROR(Unpack(data, limits, h));
  const msgpack::object& m = h.get();
  P2P_ASSIGN_OR_RETURN(uint64_t version, GetUint(m, "v", UINT32_MAX));
  if (version != kVersion) return InvalidArgument("rendezvous: unsupported version {}", version);
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
  P2P_RETURN_IF_ERROR(DecodeSignature(m, r));
  return r;
}

Bytes EncodeReply(const Reply& r) {
  msgpack::sbuffer buf;
  Packer pk(buf);
  pk.pack_map(3);
  PackStr(pk, "v").pack_uint64(kVersion);
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
    if (e.type != msgpack::type::STR) {
      return InvalidArgument("rendezvous reply: bad endpoint {}", i);
    }
    P2P_ASSIGN_OR_RETURN(std::string endpoint,
                         NormalizeEndpoint(std::string_view(e.via.str.ptr, e.via.str.size)));
    r.endpoints.push_back(std::move(endpoint));
  }
  return r;
}

Bytes SigningBytes(const Request& r) {
  Bytes out;
  out.reserve(64 + r.run_id.size() + r.endpoint.size() + r.key_id.size());
  AppendString(out, AsBytes("p2ptrain-rendezvous-v1"));
  AppendString(out, AsBytes(r.run_id));
  AppendU32(out, static_cast<uint32_t>(r.size));
  AppendU32(out, static_cast<uint32_t>(r.rank));
  AppendString(out, AsBytes(r.endpoint));
  AppendString(out, r.key_id);
  AppendU64(out, r.unix_ms);
  return out;
}

}  // namespace p2p::broker::rendezvous
