#include "broker/envelope.h"

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <msgpack.hpp>
#include <new>

#include "common/byte_pool.h"

namespace p2p::broker {
namespace {

// ---------------------------------------------------------------- names

struct TypeEntry {
  MessageType type;
  std::string_view name;
};
constexpr TypeEntry kTypes[] = {
#define P2P_ENVELOPE_TYPE_ENTRY(e, v, n) {MessageType::e, n},
    P2P_ENVELOPE_TYPES(P2P_ENVELOPE_TYPE_ENTRY)
#undef P2P_ENVELOPE_TYPE_ENTRY
};

bool IsKnownType(uint64_t wire) {
  for (const TypeEntry& t : kTypes) {
    if (static_cast<uint64_t>(t.type) == wire) return true;
  }
  return false;
}

// ---------------------------------------------------------------- encoding

// msgpack::packer stream appending to a byte vector.
class ByteSink {
 public:
  explicit ByteSink(Bytes* out) : out_(out) {}
  void write(const char* p, size_t n) {
    const auto* b = reinterpret_cast<const std::byte*>(p);
    out_->insert(out_->end(), b, b + n);
  }

 private:
  Bytes* out_;
};
using Packer = msgpack::packer<ByteSink>;

Packer& PackStr(Packer& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  return pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

void PackBin(Packer& pk, std::span<const std::byte> b) {
  pk.pack_bin(static_cast<uint32_t>(b.size()));
  pk.pack_bin_body(reinterpret_cast<const char*>(b.data()), static_cast<uint32_t>(b.size()));
}

// Longest string any field may hold (run id, codec id, keys); longer ones fail inside msgpack.
constexpr size_t kMaxStringBytes = 256;

// Canonical order of the wire keys; the body is the last signed field, "sig" comes after it.
// "view" is optional: encoded only when non-zero, so the envelopes of a run whose membership never
// changed are byte-identical to those of protocol versions without it.
constexpr size_t kSignedFieldCount = 11;
constexpr size_t kFieldCount = 12;
constexpr size_t kOptionalFieldCount = 1;

uint32_t ViewFields(const Envelope& env) { return env.view != 0 ? 1 : 0; }

// Packs every field before the body's bin header, ending with the "body" key.
void PackPrefix(Packer& pk, const Envelope& env, uint32_t map_size) {
  pk.pack_map(map_size);
  PackStr(pk, "v").pack_uint32(kProtocolVersion);
  PackStr(PackStr(pk, "run"), env.run_id);
  PackStr(pk, "type").pack_uint8(static_cast<uint8_t>(env.type));
  PackStr(pk, "from").pack_int32(env.sender);
  PackStr(pk, "to").pack_int32(env.receiver);
  PackStr(pk, "epoch").pack_uint64(env.epoch);
  PackStr(pk, "step").pack_uint64(env.step);
  PackStr(pk, "seq").pack_uint64(env.seq);
  if (env.view != 0) PackStr(pk, "view").pack_uint64(env.view);
  PackStr(PackStr(pk, "codec"), env.codec.id);
  PackStr(pk, "cparams").pack_map(static_cast<uint32_t>(env.codec.params.size()));
  for (const auto& [key, value] : env.codec.params) PackStr(pk, key).pack_double(value);
  PackStr(pk, "body");
}

Bytes EncodePrefix(const Envelope& env, uint32_t map_size, size_t reserve) {
  Bytes out = BytePool::Global().Take(reserve);  // a gradient's envelope reuses last round's
  ByteSink sink(&out);
  Packer pk(sink);
  PackPrefix(pk, env, map_size);
  return out;
}

// Bytes the prefix needs at most: fixed fields plus the variable strings and params.
size_t PrefixBound(const Envelope& env) {
  return 160 + env.run_id.size() + env.codec.id.size() + env.codec.params.size() * 48;
}

// ---------------------------------------------------------------- validation

Status ValidateRank(int64_t rank, std::string_view field, bool allow_all) {
  if (allow_all && rank == kAllRanks) return Status::Ok();
  if (rank < 0 || rank > kMaxRank) {
    return InvalidArgument("envelope field '{}': rank {} outside [0, {}]{}", field, rank, kMaxRank,
                           allow_all ? " and not -1 (all)" : "");
  }
  return Status::Ok();
}

Status ValidateCodec(const CodecInfo& codec) {
  if (codec.id.size() > kMaxCodecIdBytes) {
    return InvalidArgument("envelope field 'codec': id of {} bytes exceeds {}", codec.id.size(),
                           kMaxCodecIdBytes);
  }
  if (codec.id.empty() && !codec.params.empty()) {
    return InvalidArgument("envelope field 'cparams': parameters given without a codec id");
  }
  if (codec.params.size() > kMaxCodecParams) {
    return InvalidArgument("envelope field 'cparams': {} entries exceed {}", codec.params.size(),
                           kMaxCodecParams);
  }
  for (const auto& [key, value] : codec.params) {
    if (key.empty() || key.size() > kMaxCodecParamKeyBytes) {
      return InvalidArgument("envelope field 'cparams': key of {} bytes outside [1, {}]",
                             key.size(), kMaxCodecParamKeyBytes);
    }
    if (!std::isfinite(value)) {
      return InvalidArgument("envelope field 'cparams': value of '{}' is not finite", key);
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- decoding

// Decoding scratch: the envelope under construction and which keys were seen.
struct DecodeState {
  Envelope env;
  uint32_t seen = 0;  // bit i = field i of kDecoders
  // Where the body lies in the input; with body_in_place the body is not copied (the caller
  // reuses the input's buffer, DecodeEnvelope(Bytes&&)).
  bool body_in_place = false;
  std::span<const std::byte> body;
};

using FieldDecoder = Status (*)(const msgpack::object&, DecodeState&);

std::string_view TypeName(msgpack::type::object_type t) {
  using T = msgpack::type::object_type;
  constexpr std::pair<T, std::string_view> kNames[] = {{T::NIL, "nil"},
                                                       {T::BOOLEAN, "bool"},
                                                       {T::POSITIVE_INTEGER, "uint"},
                                                       {T::NEGATIVE_INTEGER, "int"},
                                                       {T::FLOAT32, "float"},
                                                       {T::FLOAT64, "float"},
                                                       {T::STR, "str"},
                                                       {T::BIN, "bin"},
                                                       {T::ARRAY, "array"},
                                                       {T::MAP, "map"},
                                                       {T::EXT, "ext"}};
  for (const auto& [type, name] : kNames) {
    if (type == t) return name;
  }
  return "unknown";
}

Status WrongType(std::string_view field, const msgpack::object& o, std::string_view want) {
  return InvalidArgument("envelope field '{}': expected {}, got {}", field, want, TypeName(o.type));
}

Result<uint64_t> GetUint(const msgpack::object& o, std::string_view field) {
  if (o.type != msgpack::type::POSITIVE_INTEGER) return WrongType(field, o, "uint");
  return o.via.u64;
}

Result<int64_t> GetInt(const msgpack::object& o, std::string_view field) {
  if (o.type == msgpack::type::NEGATIVE_INTEGER) return o.via.i64;
  if (o.type == msgpack::type::POSITIVE_INTEGER &&
      o.via.u64 <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return static_cast<int64_t>(o.via.u64);
  }
  return WrongType(field, o, "int");
}

Result<std::string_view> GetStr(const msgpack::object& o, std::string_view field, size_t max) {
  if (o.type != msgpack::type::STR) return WrongType(field, o, "str");
  if (o.via.str.size > max) {
    return InvalidArgument("envelope field '{}': {} bytes exceed {}", field, o.via.str.size, max);
  }
  return std::string_view(o.via.str.ptr, o.via.str.size);
}

Result<std::span<const std::byte>> GetBin(const msgpack::object& o, std::string_view field,
                                          size_t max) {
  if (o.type != msgpack::type::BIN) return WrongType(field, o, "bin");
  if (o.via.bin.size > max) {
    return InvalidArgument("envelope field '{}': {} bytes exceed {}", field, o.via.bin.size, max);
  }
  return std::span(reinterpret_cast<const std::byte*>(o.via.bin.ptr), o.via.bin.size);
}

Result<double> GetNumber(const msgpack::object& o, std::string_view field) {
  switch (o.type) {
    case msgpack::type::POSITIVE_INTEGER:
      return static_cast<double>(o.via.u64);
    case msgpack::type::NEGATIVE_INTEGER:
      return static_cast<double>(o.via.i64);
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return o.via.f64;
    default:
      return WrongType(field, o, "number");
  }
}

Status DecodeVersion(const msgpack::object& o, DecodeState&) {
  P2P_ASSIGN_OR_RETURN(uint64_t v, GetUint(o, "v"));
  if (v != kProtocolVersion) {
    return InvalidArgument(
        "envelope field 'v': unsupported protocol version {} (this build speaks {})", v,
        kProtocolVersion);
  }
  return Status::Ok();
}

Status DecodeRun(const msgpack::object& o, DecodeState& s) {
  P2P_ASSIGN_OR_RETURN(std::string_view run, GetStr(o, "run", kMaxRunIdBytes));
  s.env.run_id = std::string(run);
  return ValidateRunId(run);
}

Status DecodeType(const msgpack::object& o, DecodeState& s) {
  P2P_ASSIGN_OR_RETURN(uint64_t t, GetUint(o, "type"));
  if (!IsKnownType(t)) return InvalidArgument("envelope field 'type': unknown message type {}", t);
  s.env.type = static_cast<MessageType>(t);
  return Status::Ok();
}

Status DecodeFrom(const msgpack::object& o, DecodeState& s) {
  P2P_ASSIGN_OR_RETURN(int64_t r, GetInt(o, "from"));
  P2P_RETURN_IF_ERROR(ValidateRank(r, "from", /*allow_all=*/false));
  s.env.sender = static_cast<int32_t>(r);
  return Status::Ok();
}

Status DecodeTo(const msgpack::object& o, DecodeState& s) {
  P2P_ASSIGN_OR_RETURN(int64_t r, GetInt(o, "to"));
  P2P_RETURN_IF_ERROR(ValidateRank(r, "to", /*allow_all=*/true));
  s.env.receiver = static_cast<int32_t>(r);
  return Status::Ok();
}

Status DecodeEpoch(const msgpack::object& o, DecodeState& s) {
  P2P_ASSIGN_OR_RETURN(s.env.epoch, GetUint(o, "epoch"));
  return Status::Ok();
}

Status DecodeStep(const msgpack::object& o, DecodeState& s) {
  P2P_ASSIGN_OR_RETURN(s.env.step, GetUint(o, "step"));
  return Status::Ok();
}

Status DecodeSeq(const msgpack::object& o, DecodeState& s) {
  P2P_ASSIGN_OR_RETURN(s.env.seq, GetUint(o, "seq"));
  return Status::Ok();
}

Status DecodeView(const msgpack::object& o, DecodeState& s) {
  P2P_ASSIGN_OR_RETURN(s.env.view, GetUint(o, "view"));
  if (s.env.view == 0) return InvalidArgument("envelope field 'view': 0 is sent by omitting it");
  return Status::Ok();
}

Status DecodeCodec(const msgpack::object& o, DecodeState& s) {
  P2P_ASSIGN_OR_RETURN(std::string_view id, GetStr(o, "codec", kMaxCodecIdBytes));
  s.env.codec.id = std::string(id);
  return Status::Ok();
}

Status DecodeCodecParams(const msgpack::object& o, DecodeState& s) {
  if (o.type != msgpack::type::MAP) return WrongType("cparams", o, "map");
  if (o.via.map.size > kMaxCodecParams) {
    return InvalidArgument("envelope field 'cparams': {} entries exceed {}", o.via.map.size,
                           kMaxCodecParams);
  }
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    const msgpack::object_kv& kv = o.via.map.ptr[i];
    P2P_ASSIGN_OR_RETURN(std::string_view key, GetStr(kv.key, "cparams", kMaxCodecParamKeyBytes));
    P2P_ASSIGN_OR_RETURN(double value, GetNumber(kv.val, "cparams"));
    if (!s.env.codec.params.emplace(std::string(key), value).second) {
      return InvalidArgument("envelope field 'cparams': duplicate key '{}'", key);
    }
  }
  return Status::Ok();
}

Status DecodeBody(const msgpack::object& o, DecodeState& s) {
  P2P_ASSIGN_OR_RETURN(auto body, GetBin(o, "body", std::numeric_limits<uint32_t>::max()));
  s.body = body;
  if (!s.body_in_place) s.env.body.assign(body.begin(), body.end());
  return Status::Ok();
}

Status DecodeSignature(const msgpack::object& o, DecodeState& s) {
  P2P_ASSIGN_OR_RETURN(auto sig, GetBin(o, "sig", kMaxSignatureBytes));
  s.env.signature.assign(sig.begin(), sig.end());
  return Status::Ok();
}

struct FieldEntry {
  std::string_view key;
  FieldDecoder decode;
};
// Same order as PackPrefix; "v" first so the version is checked before anything else.
constexpr std::array<FieldEntry, kFieldCount + kOptionalFieldCount> kDecoders = {{
    {"v", DecodeVersion},
    {"run", DecodeRun},
    {"type", DecodeType},
    {"from", DecodeFrom},
    {"to", DecodeTo},
    {"epoch", DecodeEpoch},
    {"step", DecodeStep},
    {"seq", DecodeSeq},
    {"codec", DecodeCodec},
    {"cparams", DecodeCodecParams},
    {"body", DecodeBody},
    {"sig", DecodeSignature},
    {"view", DecodeView},  // optional: last, so the required fields keep their bits
}};

Result<size_t> FieldIndex(const msgpack::object& key) {
  if (key.type != msgpack::type::STR) return WrongType("<key>", key, "str");
  std::string_view name(key.via.str.ptr, key.via.str.size);
  for (size_t i = 0; i < kDecoders.size(); ++i) {
    if (kDecoders[i].key == name) return i;
  }
  return InvalidArgument("envelope: unknown field '{}'", name.substr(0, 32));
}

// Finds the value of `key` in the top-level map, or nullptr.
const msgpack::object* FindKey(const msgpack::object& map, std::string_view key) {
  for (uint32_t i = 0; i < map.via.map.size; ++i) {
    const msgpack::object& k = map.via.map.ptr[i].key;
    if (k.type == msgpack::type::STR && std::string_view(k.via.str.ptr, k.via.str.size) == key) {
      return &map.via.map.ptr[i].val;
    }
  }
  return nullptr;
}

Status MissingFields(uint32_t seen) {
  for (size_t i = 0; i < kFieldCount; ++i) {
    if (!(seen & (1u << i)))
      return InvalidArgument("envelope: missing field '{}'", kDecoders[i].key);
  }
  return Status::Ok();
}

Result<Envelope> DecodeFields(const msgpack::object& root, DecodeState& state) {
  if (root.type != msgpack::type::MAP) return WrongType("<root>", root, "map");
  const msgpack::object* version = FindKey(root, "v");
  if (version == nullptr) return InvalidArgument("envelope: missing field 'v'");
  P2P_RETURN_IF_ERROR(DecodeVersion(*version, state));
  for (uint32_t i = 0; i < root.via.map.size; ++i) {
    const msgpack::object_kv& kv = root.via.map.ptr[i];
    P2P_ASSIGN_OR_RETURN(size_t index, FieldIndex(kv.key));
    if (state.seen & (1u << index)) {
      return InvalidArgument("envelope: duplicate field '{}'", kDecoders[index].key);
    }
    state.seen |= 1u << index;
    P2P_RETURN_IF_ERROR(kDecoders[index].decode(kv.val, state));
  }
  P2P_RETURN_IF_ERROR(MissingFields(state.seen));
  P2P_RETURN_IF_ERROR(ValidateCodec(state.env.codec));
  return std::move(state.env);
}

// Bins are referenced in place (no copy, so no allocation from a bin length); strings are copied
// into the zone, where unpack_limit::str bounds them.
bool ReferenceBins(msgpack::type::object_type type, std::size_t, void*) {
  return type == msgpack::type::BIN;
}

Result<Envelope> UnpackAndDecode(std::span<const std::byte> data, DecodeState& state) {
  // Containers: the root map (12 keys) and cparams (<= 16); nesting at most 2 deep. No arrays or
  // ext are legal, but small arrays are let through so the field check can name the field.
  const msgpack::unpack_limit limits(/*array=*/kMaxCodecParams, /*map=*/kMaxCodecParams,
                                     /*str=*/kMaxStringBytes, /*bin=*/data.size(), /*ext=*/0,
                                     /*depth=*/2);
  size_t offset = 0;
  msgpack::object_handle handle =
      msgpack::unpack(reinterpret_cast<const char*>(data.data()), data.size(), offset,
                      ReferenceBins, nullptr, limits);
  if (offset != data.size()) {
    return DataLoss("envelope: {} trailing bytes after the map", data.size() - offset);
  }
  return DecodeFields(handle.get(), state);
}

}  // namespace

std::string_view MessageTypeName(MessageType type) {
  for (const TypeEntry& t : kTypes) {
    if (t.type == type) return t.name;
  }
  return "UNKNOWN";
}

Result<MessageType> MessageTypeFromName(std::string_view name) {
  for (const TypeEntry& t : kTypes) {
    if (t.name == name) return t.type;
  }
  return NotFound("unknown message type '{}'", name);
}

Status ValidateRunId(std::string_view run_id) {
  if (run_id.empty() || run_id.size() > kMaxRunIdBytes) {
    return InvalidArgument("envelope field 'run': run id of {} bytes outside [1, {}]",
                           run_id.size(), kMaxRunIdBytes);
  }
  return Status::Ok();
}

Status ValidateEnvelope(const Envelope& env) {
  P2P_RETURN_IF_ERROR(ValidateRunId(env.run_id));
  if (!IsKnownType(static_cast<uint64_t>(env.type))) {
    return InvalidArgument("envelope field 'type': unknown message type {}",
                           static_cast<int>(env.type));
  }
  P2P_RETURN_IF_ERROR(ValidateRank(env.sender, "from", /*allow_all=*/false));
  P2P_RETURN_IF_ERROR(ValidateRank(env.receiver, "to", /*allow_all=*/true));
  P2P_RETURN_IF_ERROR(ValidateCodec(env.codec));
  if (env.body.size() > std::numeric_limits<uint32_t>::max()) {
    return InvalidArgument("envelope field 'body': {} bytes exceed 4 GiB", env.body.size());
  }
  if (env.signature.size() > kMaxSignatureBytes) {
    return InvalidArgument("envelope field 'sig': {} bytes exceed {}", env.signature.size(),
                           kMaxSignatureBytes);
  }
  return Status::Ok();
}

Result<Bytes> EncodeEnvelope(const Envelope& env) {
  P2P_RETURN_IF_ERROR(ValidateEnvelope(env));
  Bytes out = EncodePrefix(env, kFieldCount + ViewFields(env),
                           PrefixBound(env) + env.body.size() + env.signature.size() + 16);
  ByteSink sink(&out);
  Packer pk(sink);
  PackBin(pk, env.body);
  PackStr(pk, "sig");
  PackBin(pk, env.signature);
  return out;
}

namespace {

Result<Envelope> Decode(std::span<const std::byte> data, const EnvelopeLimits& limits,
                        DecodeState& state) {
  if (data.size() > limits.max_envelope_bytes) {
    return InvalidArgument("envelope: {} bytes exceed the limit of {}", data.size(),
                           limits.max_envelope_bytes);
  }
  if (data.empty()) return DataLoss("envelope: empty message");
  try {
    return UnpackAndDecode(data, state);
  } catch (const msgpack::insufficient_bytes&) {
    return DataLoss("envelope: truncated msgpack ({} bytes)", data.size());
  } catch (const msgpack::str_size_overflow&) {
    return InvalidArgument("envelope: a string field exceeds {} bytes", kMaxStringBytes);
  } catch (const msgpack::size_overflow& e) {
    return InvalidArgument("envelope: msgpack length over the decoder's limit ({})", e.what());
  } catch (const std::bad_alloc&) {
    return InvalidArgument("envelope: out of memory while decoding {} bytes", data.size());
  } catch (const std::exception& e) {
    return DataLoss("envelope: malformed msgpack ({})", e.what());
  } catch (...) {
    return DataLoss("envelope: malformed msgpack");
  }
}

}  // namespace

Result<Envelope> DecodeEnvelope(std::span<const std::byte> data, const EnvelopeLimits& limits) {
  DecodeState state;
  return Decode(data, limits, state);
}

Result<Envelope> DecodeEnvelope(Bytes&& data, const EnvelopeLimits& limits) {
  Bytes buffer = std::move(data);
  DecodeState state;
  state.body_in_place = true;
  P2P_ASSIGN_OR_RETURN(Envelope env, Decode(buffer, limits, state));
  // The body is a bin inside `buffer` (ReferenceBins): slide it to the front and cut the rest.
  const size_t size = state.body.size();
  if (size != 0) {
    const auto offset = state.body.data() - buffer.data();
    P2P_CHECK(offset > 0 && static_cast<size_t>(offset) + size <= buffer.size(),
              "envelope body not inside the decoded buffer");
    std::memmove(buffer.data(), state.body.data(), size);
  }
  buffer.resize(size);
  env.body = std::move(buffer);
  return env;
}

void VisitSigningBytes(const Envelope& env,
                       const std::function<void(std::span<const std::byte>)>& sink) {
  P2P_CHECK(env.body.size() <= std::numeric_limits<uint32_t>::max(), "body of {} bytes",
            env.body.size());
  Bytes prefix = EncodePrefix(env, kSignedFieldCount + ViewFields(env), PrefixBound(env) + 8);
  ByteSink bin_sink(&prefix);
  Packer pk(bin_sink);
  pk.pack_bin(static_cast<uint32_t>(env.body.size()));
  sink(prefix);
  if (!env.body.empty()) sink(env.body);
}

Bytes SigningBytes(const Envelope& env) {
  Bytes out;
  out.reserve(PrefixBound(env) + 8 + env.body.size());
  VisitSigningBytes(env, [&out](std::span<const std::byte> piece) {
    out.insert(out.end(), piece.begin(), piece.end());
  });
  return out;
}

Bytes SigningHeader(const Envelope& env) {
  Bytes header;
  bool first = true;
  VisitSigningBytes(env, [&](std::span<const std::byte> piece) {
    if (first) header.assign(piece.begin(), piece.end());
    first = false;
  });
  return header;
}

}  // namespace p2p::broker
