// The codec registry (ids, parameters, defaults), the --compression syntax, the shared validation
// helpers and the sender-side GradientEncoder.
#include "sync/codecs/codec.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <optional>

#include "sync/codecs/codec_internal.h"

namespace p2p::sync::codecs {
namespace {

using internal::Param;

struct ParamDesc {
  const char* key;
  double default_value;
  double min, max;
  bool integer;
  // Symbolic values accepted on the command line and printed by FormatCodecSpec.
  std::vector<std::pair<const char*, double>> names = {};
  bool min_exclusive = false;
};

struct CodecDesc {
  const char* id;
  std::vector<ParamDesc> params;
  std::function<std::unique_ptr<Codec>(const CodecConfig&)> make;
  // Codec-specific rules beyond ranges; may drop parameters that do not apply. `given` holds the
  // keys the user set explicitly.
  std::function<Status(Params&, const Params& given)> finish = nullptr;
};

constexpr double kMaxBucket = double(uint32_t{1} << 31);

ParamDesc Ef(double def) { return {"ef", def, 0, 1, true}; }
ParamDesc Bits(double max) { return {"bits", 8, 1, max, true}; }
ParamDesc Bucket() { return {"bucket", 0, 0, kMaxBucket, true}; }

Status BucketRule(Params& p, const Params&) {
  const double b = p.at("bucket");
  if (b != 0 && std::fmod(b, 64.0) != 0) {
    return InvalidArgument(
        "bucket {} must be 0 (one norm for the whole vector) or a multiple of 64", b);
  }
  return Status::Ok();
}

const std::vector<CodecDesc>& Registry() {
  static const std::vector<CodecDesc> kCodecs = {
      {"none", {}, internal::MakeNone},
      {"fp16", {Ef(0)}, internal::MakeFp16},
      {"qsgd", {Bits(16), Bucket(), Ef(0)}, internal::MakeQsgd, BucketRule},
      {"qsgd-elias",
       {Bits(16),
        Bucket(),
        {"code", 0, 0, 1, true, {{"gamma", 0}, {"omega", 1}}},
        {"order", 0, 0, 15, true},
        Ef(0)},
       internal::MakeQsgdElias,
       BucketRule},
      {"qsgd-linf", {Bits(15), Bucket(), Ef(0)}, internal::MakeQsgdLinf, BucketRule},
      {"uint8",
       {{"mode", 1, 0, 1, true, {{"meanstd", 0}, {"block", 1}}},
        {"k", 6, 0, 1e6, false, {}, /*min_exclusive=*/true},
        {"block", 4096, 1, kMaxBucket, true},
        Ef(0)},
       internal::MakeUint8,
       [](Params& p, const Params& given) -> Status {
         const bool block = p.at("mode") == 1;
         const char* unused = block ? "k" : "block";
         if (given.contains(unused)) {
           return InvalidArgument("'{}' does not apply to mode={}", unused,
                                  block ? "block" : "meanstd");
         }
         p.erase(unused);
         return Status::Ok();
       }},
      {"topk",
       {{"ratio", 0.01, 0, 1, false, {}, /*min_exclusive=*/true},
        Ef(1),
        {"momentum", 0, 0, 0.999, false}},
       internal::MakeTopk,
       [](Params& p, const Params&) -> Status {
         if (p.at("momentum") > 0 && p.at("ef") == 0) {
           return InvalidArgument("momentum correction needs error feedback (ef=1)");
         }
         return Status::Ok();
       }},
  };
  return kCodecs;
}

const CodecDesc* Find(std::string_view id) {
  for (const auto& d : Registry()) {
    if (d.id == id) return &d;
  }
  return nullptr;
}

const ParamDesc* FindParam(const CodecDesc& d, std::string_view key) {
  for (const auto& p : d.params) {
    if (p.key == key) return &p;
  }
  return nullptr;
}

std::string ParamKeys(const CodecDesc& d) {
  std::vector<std::string> keys;
  for (const auto& p : d.params) keys.emplace_back(p.key);
  return keys.empty() ? "none" : fmt::format("{}", fmt::join(keys, ", "));
}

}  // namespace

bool Codec::error_feedback() const {
  const auto it = config_.params.find("ef");
  return it != config_.params.end() && it->second != 0;
}

double Codec::momentum() const {
  const auto it = config_.params.find("momentum");
  return it != config_.params.end() ? it->second : 0.0;
}

std::vector<std::string> CodecNames() {
  std::vector<std::string> names;
  for (const auto& d : Registry()) names.emplace_back(d.id);
  return names;
}

Result<CodecConfig> CanonicalCodecConfig(const CodecConfig& config) {
  const CodecDesc* d = Find(config.id);
  if (!d) {
    return InvalidArgument("unknown codec '{}'; valid: {}", config.id,
                           fmt::join(CodecNames(), ", "));
  }
  CodecConfig out{config.id, {}};
  for (const auto& [key, value] : config.params) {
    const ParamDesc* p = FindParam(*d, key);
    if (!p) {
      return InvalidArgument("codec '{}' has no parameter '{}' (its parameters: {})", d->id, key,
                             ParamKeys(*d));
    }
    const bool below = p->min_exclusive ? !(value > p->min) : !(value >= p->min);
    if (!std::isfinite(value) || below || value > p->max) {
      return InvalidArgument("codec '{}': {}={} is outside {}{}, {}]", d->id, key, value,
                             p->min_exclusive ? "(" : "[", p->min, p->max);
    }
    if (p->integer && value != std::floor(value)) {
      return InvalidArgument("codec '{}': {}={} must be a whole number", d->id, key, value);
    }
  }
  for (const auto& p : d->params) {
    const auto it = config.params.find(p.key);
    out.params[p.key] = it != config.params.end() ? it->second : p.default_value;
  }
  if (d->finish) {
    if (Status s = d->finish(out.params, config.params); !s.ok()) {
      return s.Annotate(fmt::format("codec '{}'", d->id));
    }
  }
  return out;
}

Result<std::unique_ptr<Codec>> MakeCodec(const CodecConfig& config) {
  P2P_ASSIGN_OR_RETURN(CodecConfig canonical, CanonicalCodecConfig(config));
  return Find(canonical.id)->make(canonical);
}

Result<CodecConfig> ParseCodecSpec(std::string_view spec) {
  const size_t colon = spec.find(':');
  CodecConfig config{std::string(spec.substr(0, colon)), {}};
  if (config.id.empty()) {
    return InvalidArgument("'{}' names no codec; valid: {}", spec, fmt::join(CodecNames(), ", "));
  }
  const CodecDesc* d = Find(config.id);
  if (!d) {
    return InvalidArgument("unknown codec '{}'; valid: {}", config.id,
                           fmt::join(CodecNames(), ", "));
  }
  if (colon == std::string_view::npos) return config;
  std::string_view rest = spec.substr(colon + 1);
  while (true) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == item.size()) {
      return InvalidArgument("codec '{}': '{}' is not key=value (e.g. {}:bits=4,bucket=512)",
                             config.id, item, "qsgd");
    }
    const std::string key(item.substr(0, eq));
    const std::string_view text = item.substr(eq + 1);
    const ParamDesc* p = FindParam(*d, key);
    if (!p) {
      return InvalidArgument("codec '{}' has no parameter '{}' (its parameters: {})", d->id, key,
                             ParamKeys(*d));
    }
    std::optional<double> value;
    for (const auto& [name, v] : p->names) {
      if (text == name) value = v;
    }
    if (!value) {
      double v = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v)) {
        std::vector<std::string> names;
        for (const auto& nv : p->names) names.emplace_back(nv.first);
        return InvalidArgument("codec '{}': {}='{}' is not {}", d->id, key, text,
                               names.empty() ? std::string("a number")
                                             : fmt::format("one of {}", fmt::join(names, ", ")));
      }
      value = v;
    }
    if (!config.params.emplace(key, *value).second) {
      return InvalidArgument("codec '{}': '{}' is given twice", d->id, key);
    }
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return config;
}

std::string FormatCodecSpec(const CodecConfig& config) {
  std::string out = config.id;
  const CodecDesc* d = Find(config.id);
  char sep = ':';
  for (const auto& [key, value] : config.params) {
    std::string text = fmt::format("{}", value);
    if (const ParamDesc* p = d ? FindParam(*d, key) : nullptr) {
      for (const auto& [name, v] : p->names) {
        if (v == value) text = name;
      }
    }
    out += fmt::format("{}{}={}", sep, key, text);
    sep = ',';
  }
  return out;
}

Result<CodecConfig> ResolveCompression(const CompressionFlags& flags) {
  const std::string spec = flags.spec.empty() || flags.spec == "true" ? "qsgd" : flags.spec;
  auto parsed = ParseCodecSpec(spec);
  if (!parsed.ok()) return parsed.status().Annotate("--compression");
  CodecConfig config = std::move(*parsed);
  const bool qsgd_family = config.id.starts_with("qsgd");
  auto set = [&](const char* flag, const char* key, double value, bool applies,
                 const char* codecs) -> Status {
    if (!applies) {
      return InvalidArgument("{} applies to {} only, but --compression is '{}'", flag, codecs,
                             config.id);
    }
    const auto [it, inserted] = config.params.emplace(key, value);
    if (!inserted && it->second != value) {
      return InvalidArgument("{} {} contradicts {}={} in --compression '{}'", flag, value, key,
                             it->second, spec);
    }
    return Status::Ok();
  };
  if (flags.qsgd_bits != 0) {
    P2P_RETURN_IF_ERROR(
        set("--qsgd-bits", "bits", flags.qsgd_bits, qsgd_family, "qsgd, qsgd-elias and qsgd-linf"));
  }
  if (flags.qsgd_bucket != -1) {
    P2P_RETURN_IF_ERROR(set("--qsgd-bucket", "bucket", static_cast<double>(flags.qsgd_bucket),
                            qsgd_family, "qsgd, qsgd-elias and qsgd-linf"));
  }
  if (flags.topk_ratio != 0) {
    P2P_RETURN_IF_ERROR(
        set("--topk-ratio", "ratio", flags.topk_ratio, config.id == "topk", "topk"));
  }
  auto canonical = CanonicalCodecConfig(config);
  if (!canonical.ok()) return canonical.status().Annotate("--compression");
  return canonical;
}

GradientEncoder::GradientEncoder(std::shared_ptr<const Codec> codec) : codec_(std::move(codec)) {}

Status GradientEncoder::Encode(std::span<const float> grad, uint64_t seed, bool feedback,
                               std::vector<std::byte>& out) {
  pending_feedback_ = feedback && codec_->error_feedback();
  if (!pending_feedback_) return codec_->Encode(grad, seed, out);
  const size_t n = grad.size();
  if (residual_.size() != n) residual_.assign(n, 0.0f);
  sent_.resize(n);
  if (const auto mu = static_cast<float>(codec_->momentum()); mu > 0.0f) {
    // Momentum correction without masking: the velocity keeps running after a coordinate is
    // sent, so over time the sent mass is the same as momentum SGD's (docs/codecs.md).
    if (velocity_.size() != n) velocity_.assign(n, 0.0f);
    for (size_t i = 0; i < n; ++i) {
      velocity_[i] = mu * velocity_[i] + grad[i];
      sent_[i] = velocity_[i] + residual_[i];
    }
  } else {
    for (size_t i = 0; i < n; ++i) sent_[i] = grad[i] + residual_[i];
  }
  Status s = codec_->Encode(sent_, seed, out);
  if (!s.ok()) pending_feedback_ = false;
  return s;
}

Status GradientEncoder::DecodeOwn(std::span<const std::byte> payload, std::span<float> decoded) {
  P2P_RETURN_IF_ERROR(codec_->Decode(payload, decoded));
  if (pending_feedback_) {
    P2P_CHECK(sent_.size() == decoded.size(), "DecodeOwn of {} values after an Encode of {}",
              decoded.size(), sent_.size());
    for (size_t i = 0; i < decoded.size(); ++i) residual_[i] = sent_[i] - decoded[i];
    pending_feedback_ = false;
  }
  return Status::Ok();
}

Status CheckEncoderState(const Codec& codec, std::span<const float> residual,
                         std::span<const float> velocity) {
  if (!codec.error_feedback() && !(residual.empty() && velocity.empty())) {
    return InvalidArgument("codec {} keeps no error-feedback state, but the checkpoint has some",
                           codec.id());
  }
  if (codec.momentum() <= 0 && !velocity.empty()) {
    return InvalidArgument("codec {} has no momentum correction, but the checkpoint has a velocity",
                           codec.id());
  }
  if (!residual.empty() && !velocity.empty() && residual.size() != velocity.size()) {
    return InvalidArgument("residual of {} values but velocity of {}", residual.size(),
                           velocity.size());
  }
  for (const auto v : {residual, velocity}) {
    for (float x : v) {
      if (!std::isfinite(x)) return InvalidArgument("codec state holds a non-finite value");
    }
  }
  return Status::Ok();
}

Status GradientEncoder::Restore(std::vector<float> residual, std::vector<float> velocity) {
  P2P_RETURN_IF_ERROR(CheckEncoderState(*codec_, residual, velocity));
  residual_ = std::move(residual);
  velocity_ = std::move(velocity);
  pending_feedback_ = false;
  return Status::Ok();
}

uint64_t RoundSeed(uint64_t run_seed, int rank, uint64_t epoch, uint64_t step) {
  uint64_t s = run_seed ^ 0x243f6a8885a308d3ULL;
  uint64_t h = internal::SplitMix64(s);
  s = h ^ (uint64_t{static_cast<uint32_t>(rank)} << 1);
  h = internal::SplitMix64(s);
  s = h ^ epoch;
  h = internal::SplitMix64(s);
  s = h ^ step;
  return internal::SplitMix64(s);
}

namespace internal {

Status NonFiniteError(std::span<const float> values) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return InvalidArgument(
          "value {} of {} is {}: the gradient is not finite (training diverged? try a lower "
          "--lr)",
          i, values.size(), values[i]);
    }
    if (!(std::fabs(values[i]) <= kMaxScale)) {
      return InvalidArgument("value {} of {} is {}, beyond the largest supported magnitude {}", i,
                             values.size(), values[i], kMaxScale);
    }
  }
  return Status::Ok();
}

Status CheckFinite(std::span<const float> values) {
  if (MaxAbsBits(values.data(), values.size()) <= std::bit_cast<uint32_t>(kMaxScale)) {
    return Status::Ok();
  }
  return NonFiniteError(values);
}

Status CheckCount(size_t n) {
  if (n > UINT32_MAX) {
    return InvalidArgument("{} values do not fit a codec payload (at most 2^32 - 1)", n);
  }
  return Status::Ok();
}

Status CheckHeader(std::string_view codec, std::span<const std::byte> payload, size_t out_size,
                   size_t header_bytes) {
  if (payload.size() < header_bytes) {
    return DataLoss("{} payload of {} bytes is shorter than its {}-byte header", codec,
                    payload.size(), header_bytes);
  }
  const uint32_t n = LoadU32(payload.data());
  if (n != out_size) {
    return DataLoss("{} payload declares {} values but {} were expected", codec, n, out_size);
  }
  return Status::Ok();
}

Status CheckSize(std::string_view codec, std::span<const std::byte> payload, size_t expected) {
  if (payload.size() != expected) {
    return DataLoss("{} payload is {} bytes but its header implies {}", codec, payload.size(),
                    expected);
  }
  return Status::Ok();
}

Status CheckScale(std::string_view codec, std::string_view what, float scale, size_t index) {
  if (!(scale >= 0.0f && scale <= kMaxScale)) {
    return DataLoss("{} payload: {} {} is {} (must be finite, >= 0 and <= {})", codec, what, index,
                    scale, kMaxScale);
  }
  return Status::Ok();
}

namespace {
constexpr size_t kLanes = 16;
double AddLanes(const double* acc) {
  double s8[8], s4[4];
  for (size_t j = 0; j < 8; ++j) s8[j] = acc[j] + acc[j + 8];
  for (size_t j = 0; j < 4; ++j) s4[j] = s8[j] + s8[j + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}
}  // namespace

double SumOfSquares(const float* x, size_t n) {
  double acc[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) {
      const double v = x[i + j];
      acc[j] += v * v;
    }
  }
  for (size_t j = 0; i + j < n; ++j) {
    const double v = x[i + j];
    acc[j] += v * v;
  }
  return AddLanes(acc);
}

double Sum(const float* x, size_t n) {
  double acc[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) acc[j] += x[i + j];
  }
  for (size_t j = 0; i + j < n; ++j) acc[j] += x[i + j];
  return AddLanes(acc);
}

double SumOfSquaredDeviations(const float* x, size_t n, double mean) {
  double acc[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) {
      const double d = double(x[i + j]) - mean;
      acc[j] += d * d;
    }
  }
  for (size_t j = 0; i + j < n; ++j) {
    const double d = double(x[i + j]) - mean;
    acc[j] += d * d;
  }
  return AddLanes(acc);
}

uint32_t MaxAbsBits(const float* x, size_t n) {
  uint32_t m = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, 4);
    b &= 0x7fffffffu;
    m = b > m ? b : m;
  }
  return m;
}

LaneRng::LaneRng(uint64_t seed) {
  uint64_t state = seed;
  for (int j = 0; j < kLanes; ++j) {
    const uint64_t a = SplitMix64(state), b = SplitMix64(state);
    s0_[j] = static_cast<uint32_t>(a);
    s1_[j] = static_cast<uint32_t>(a >> 32);
    s2_[j] = static_cast<uint32_t>(b);
    s3_[j] = static_cast<uint32_t>(b >> 32) | 1u;  // never the all-zero state
  }
}

uint16_t HalfFromFloatSoft(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u);  // NaN, Inf
  if (x >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: overflow
  if (x < 0x38800000u) {                        // below 2^-14: a subnormal half (or zero)
    if (x < 0x33000000u) return sign;           // below 2^-25: rounds to zero
    const uint32_t exp = x >> 23;
    const uint32_t mant = (x & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exp;  // 14..24: mant >> shift is the subnormal's mantissa
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return sign | static_cast<uint16_t>(h);
  }
  uint32_t h = ((x >> 13) - (112u << 10));  // rebias exponent 127 -> 15
  const uint32_t rem = x & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return sign | static_cast<uint16_t>(h);
}

float FloatFromHalfSoft(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t x;
  if (exp == 0x1f) {
    x = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    x = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    x = sign;
  } else {                                        // subnormal: normalise
    const int top = 31 - std::countl_zero(mant);  // value = mant * 2^-24 = 1.f * 2^(top - 24)
    x = sign | (uint32_t(top + 103) << 23) | ((mant << (23 - top)) & 0x7fffffu);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

EliasCode EliasGamma(uint32_t m) {
  const int n = 31 - std::countl_zero(m);  // floor(log2 m)
  return {m, 2 * n + 1};
}

EliasCode EliasOmega(uint32_t m) {
  // Built from the end: "0", then each group binary(n) in front, n = its length - 1.
  EliasCode c{0, 1};
  uint64_t n = m;
  while (n > 1) {
    const int len = 64 - std::countl_zero(n);
    c.bits |= n << c.length;
    c.length += len;
    n = static_cast<uint64_t>(len - 1);
  }
  return c;
}

}  // namespace internal
}  // namespace p2p::sync::codecs
