// Envelope: the one message format every p2ptrain peer speaks (spec: docs/wire-format.md).
//
// An envelope is one msgpack map with short string keys. EncodeEnvelope writes the keys in a fixed
// canonical order; DecodeEnvelope accepts them in any order but requires every key exactly once
// and rejects unknown keys (new fields mean a new protocol version). DecodeEnvelope treats its
// input as hostile: it bounds the total size, passes msgpack::unpack_limit so no length prefix can
// make it allocate more than the input, validates every field, and never throws.
//
// Thread-safety: all functions are pure; call them from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace p2p::broker {

using Bytes = std::vector<std::byte>;

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr int32_t kAllRanks = -1;  // receiver of a broadcast
inline constexpr int32_t kMaxRank = 65535;
inline constexpr size_t kMaxRunIdBytes = 128;
inline constexpr size_t kMaxCodecIdBytes = 32;
inline constexpr size_t kMaxCodecParams = 16;
inline constexpr size_t kMaxCodecParamKeyBytes = 32;
inline constexpr size_t kMaxSignatureBytes = 1024;  // RSA-8192 fits; HMAC-SHA256 uses 32
inline constexpr uint64_t kDefaultMaxEnvelopeBytes = uint64_t{256} << 20;

// X(enumerator, wire value, name). Wire values are part of the protocol: never renumber.
#define P2P_ENVELOPE_TYPES(X)         \
  X(kJoin, 1, "JOIN")                 \
  X(kChallenge, 2, "CHALLENGE")       \
  X(kWelcome, 3, "WELCOME")           \
  X(kGradient, 4, "GRADIENT")         \
  X(kAggregate, 5, "AGGREGATE")       \
  X(kBarrier, 6, "BARRIER")           \
  X(kHeartbeat, 7, "HEARTBEAT")       \
  X(kLeave, 8, "LEAVE")               \
  X(kTask, 9, "TASK")                 \
  X(kResult, 10, "RESULT")            \
  X(kHello, 11, "HELLO")              \
  X(kParamsHash, 12, "PARAMS_HASH")   \
  X(kEpochEnd, 13, "EPOCH_END")       \
  X(kViewPropose, 14, "VIEW_PROPOSE") \
  X(kViewInstall, 15, "VIEW_INSTALL") \
  X(kJoinRequest, 16, "JOIN_REQUEST") \
  X(kState, 17, "STATE")              \
  X(kResend, 18, "RESEND")

enum class MessageType : uint8_t {
#define P2P_ENVELOPE_TYPE_ENUM(e, v, n) e = v,
  P2P_ENVELOPE_TYPES(P2P_ENVELOPE_TYPE_ENUM)
#undef P2P_ENVELOPE_TYPE_ENUM
};

// "GRADIENT", ...; "UNKNOWN" for values outside the table.
std::string_view MessageTypeName(MessageType type);
// Inverse of MessageTypeName; NotFound for an unknown name.
Result<MessageType> MessageTypeFromName(std::string_view name);

// How the body of a GRADIENT/AGGREGATE is packed. Empty id (and no params) for other types.
// Params are numbers (levels, ratios, ...); std::map keeps them in canonical (sorted) order.
struct CodecInfo {
  std::string id;                        // <= kMaxCodecIdBytes, e.g. "fp16", "qsgd"
  std::map<std::string, double> params;  // <= kMaxCodecParams keys of <= 32 bytes; finite values
  bool operator==(const CodecInfo&) const = default;
};

struct Envelope {
  std::string run_id;  // 1..kMaxRunIdBytes bytes
  MessageType type = MessageType::kHeartbeat;
  int32_t sender = 0;            // 0..kMaxRank
  int32_t receiver = kAllRanks;  // kAllRanks or 0..kMaxRank
  uint64_t epoch = 0;
  uint64_t step = 0;
  uint64_t seq = 0;  // per-sender sequence number (replay guard)
  // The membership view the sender was in (sync/membership/); 0, the run's first view, is not
  // written on the wire.
  uint64_t view = 0;
  CodecInfo codec;
  Bytes body;
  Bytes signature;  // <= kMaxSignatureBytes; empty until crypto/ signs
  bool operator==(const Envelope&) const = default;
};

struct EnvelopeLimits {
  uint64_t max_envelope_bytes = kDefaultMaxEnvelopeBytes;  // whole encoded message
};

// Checks every field against the bounds above (the same checks DecodeEnvelope applies).
Status ValidateEnvelope(const Envelope& env);
// Checks a run id alone (non-empty, <= kMaxRunIdBytes); for CLI validation.
Status ValidateRunId(std::string_view run_id);

// Encodes `env` (protocol version kProtocolVersion). InvalidArgument if a field is out of bounds.
Result<Bytes> EncodeEnvelope(const Envelope& env);

// Decodes untrusted bytes. InvalidArgument (bad field, unknown version, too large) or DataLoss
// (truncated or malformed msgpack), each message naming the field. Never throws.
Result<Envelope> DecodeEnvelope(std::span<const std::byte> data, const EnvelopeLimits& limits = {});
// The same checks and results, but the body is not copied: `data`'s buffer becomes the body (its
// bytes moved to the front in place), so a multi-megabyte message costs no second allocation.
// `data` is consumed whether or not decoding succeeds.
Result<Envelope> DecodeEnvelope(Bytes&& data, const EnvelopeLimits& limits = {});

// The canonical bytes a signature covers: the msgpack map of every field except "sig", in
// canonical order (so the body is last). Deterministic for equal envelopes; independent of the
// signature field. Used by crypto/ to sign and verify.
Bytes SigningBytes(const Envelope& env);
// The same bytes without copying the body: `sink` is called with the encoded prefix, then with the
// body itself. Concatenating the pieces gives exactly SigningBytes(env).
void VisitSigningBytes(const Envelope& env,
                       const std::function<void(std::span<const std::byte>)>& sink);
// VisitSigningBytes' first piece alone: every signed field but the body bytes (what a session MAC
// covers besides the body, crypto/session_mac.h).
Bytes SigningHeader(const Envelope& env);

}  // namespace p2p::broker
