// Gradient codecs: configuration syntax, round trips and error bounds, and rejection of malformed
// payloads (sync/codecs/codec.h). Statistical properties are in codec_stats_test.cc, error
// feedback in codec_feedback_test.cc.
#include "sync/codecs/codec.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <random>

#include "sync/codecs/codec_internal.h"

namespace p2p::sync::codecs {
namespace {

using Bytes = std::vector<std::byte>;

std::unique_ptr<Codec> Make(const std::string& spec) {
  auto config = ParseCodecSpec(spec);
  EXPECT_TRUE(config.ok()) << spec << ": " << config.status().ToString();
  auto codec = MakeCodec(*config);
  EXPECT_TRUE(codec.ok()) << spec << ": " << codec.status().ToString();
  return std::move(*codec);
}

Bytes Encode(const Codec& codec, std::span<const float> x, uint64_t seed = 7) {
  Bytes out;
  const Status s = codec.Encode(x, seed, out);
  EXPECT_TRUE(s.ok()) << codec.id() << ": " << s.ToString();
  EXPECT_LE(out.size(), codec.MaxPayloadBytes(x.size()));
  return out;
}

std::vector<float> Decode(const Codec& codec, std::span<const std::byte> payload, size_t n) {
  std::vector<float> out(n, -1.0f);
  const Status s = codec.Decode(payload, out);
  EXPECT_TRUE(s.ok()) << codec.id() << ": " << s.ToString();
  return out;
}

std::vector<float> Gaussian(size_t n, uint64_t seed, float sigma = 1.0f) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(n);
  for (float& v : x) v = dist(gen);
  return x;
}

double L2(std::span<const float> x) {
  double s = 0;
  for (float v : x) s += double(v) * v;
  return std::sqrt(s);
}

// ---- configuration ----

TEST(CodecConfigTest, ParsesCanonicalisesAndFormats) {
  auto c = ParseCodecSpec("qsgd:bits=4,bucket=512");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->id, "qsgd");
  EXPECT_EQ(c->params, (Params{{"bits", 4}, {"bucket", 512}}));
  auto canonical = CanonicalCodecConfig(*c);
  ASSERT_TRUE(canonical.ok());
  EXPECT_EQ(canonical->params, (Params{{"bits", 4}, {"bucket", 512}, {"ef", 0}}));
  EXPECT_EQ(FormatCodecSpec(*canonical), "qsgd:bits=4,bucket=512,ef=0");
  EXPECT_EQ(FormatCodecSpec(*CanonicalCodecConfig(*ParseCodecSpec("topk"))),
            "topk:ef=1,momentum=0,ratio=0.01");
  EXPECT_EQ(FormatCodecSpec(*CanonicalCodecConfig(*ParseCodecSpec("qsgd-elias:code=omega"))),
            "qsgd-elias:bits=8,bucket=0,code=omega,ef=0,order=0");
  EXPECT_EQ(FormatCodecSpec(*CanonicalCodecConfig(*ParseCodecSpec("uint8:mode=meanstd"))),
            "uint8:ef=0,k=6,mode=meanstd");
  EXPECT_EQ(FormatCodecSpec(*CanonicalCodecConfig(*ParseCodecSpec("uint8"))),
            "uint8:block=4096,ef=0,mode=block");
  EXPECT_EQ(FormatCodecSpec(*CanonicalCodecConfig(*ParseCodecSpec("none"))), "none");
  // The formatted form parses back to the same configuration.
  for (const auto& name : CodecNames()) {
    const auto config = *CanonicalCodecConfig({name, {}});
    auto again = ParseCodecSpec(FormatCodecSpec(config));
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(*again, config);
  }
}

TEST(CodecConfigTest, BadSpecsAreErrorsNamingTheProblem) {
  const std::pair<std::string, std::string> cases[] = {
      {"zstd", "unknown codec 'zstd'; valid: none, fp16, qsgd"},
      {"", "names no codec"},
      {"qsgd:bits", "not key=value"},
      {"qsgd:=4", "not key=value"},
      {"qsgd:bits=", "not key=value"},
      {"qsgd:bits=4,", "not key=value"},
      {"qsgd:level=4", "no parameter 'level'"},
      {"qsgd:bits=four", "is not a number"},
      {"qsgd:bits=nan", "is not a number"},
      {"qsgd:bits=0", "outside [1, 16]"},
      {"qsgd:bits=17", "outside [1, 16]"},
      {"qsgd-linf:bits=16", "outside [1, 15]"},
      {"qsgd:bits=4.5", "whole number"},
      {"qsgd:bits=4,bits=5", "given twice"},
      {"qsgd:bucket=100", "multiple of 64"},
      {"qsgd:bucket=-64", "outside"},
      {"qsgd-elias:code=delta", "one of gamma, omega"},
      {"qsgd-elias:order=16", "outside [0, 15]"},
      {"topk:ratio=0", "outside (0, 1]"},
      {"topk:ratio=1.5", "outside (0, 1]"},
      {"topk:ef=2", "outside [0, 1]"},
      {"topk:momentum=1", "outside [0, 0.999]"},
      {"topk:momentum=0.9,ef=0", "needs error feedback"},
      {"uint8:mode=block,k=3", "'k' does not apply to mode=block"},
      {"uint8:mode=meanstd,block=64", "'block' does not apply to mode=meanstd"},
      {"none:ef=1", "no parameter 'ef'"},
  };
  for (const auto& [spec, expected] : cases) {
    Status s = Status::Ok();
    auto config = ParseCodecSpec(spec);
    if (!config.ok()) {
      s = config.status();
    } else {
      s = MakeCodec(*config).status();
    }
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << spec;
    EXPECT_NE(s.message().find(expected), std::string::npos) << spec << ": " << s.message();
  }
}

// ---- properties every codec must have ----

class EveryCodec : public ::testing::TestWithParam<std::string> {};

const std::vector<std::string> kSpecs = {
    "none",
    "fp16",
    "qsgd",
    "qsgd:bits=1",
    "qsgd:bits=3,bucket=192",
    "qsgd:bits=4,bucket=64",
    "qsgd:bits=16",
    "qsgd-elias",
    "qsgd-elias:code=omega",
    "qsgd-elias:bits=2,bucket=64",
    "qsgd-elias:bits=16,bucket=128,code=omega",
    "qsgd-elias:bits=8,bucket=64,order=3",
    "qsgd-elias:bits=5,code=omega,order=2",
    "qsgd-linf",
    "qsgd-linf:bits=7",
    "qsgd-linf:bits=3,bucket=64",
    "uint8",
    "uint8:block=100",
    "uint8:mode=meanstd",
    "topk",
    "topk:ratio=0.3",
    "topk:ratio=1",
};

TEST_P(EveryCodec, EmptySingleAndZeroVectors) {
  const auto codec = Make(GetParam());
  EXPECT_TRUE(Decode(*codec, Encode(*codec, {}), 0).empty());
  const std::vector<float> one = {-0.75f};
  const auto decoded = Decode(*codec, Encode(*codec, one), 1);
  // One value: its own norm / max / top-1 / range, so every codec but fp16/uint8 is exact up to
  // rounding of scale / s; fp16 and uint8 are within their bounds.
  EXPECT_NEAR(decoded[0], -0.75f, 0.75f / 127) << GetParam();
  for (size_t n : {1, 64, 1000}) {
    const std::vector<float> zeros(n, 0.0f);
    const auto z = Decode(*codec, Encode(*codec, zeros), n);
    for (float v : z) ASSERT_EQ(v, 0.0f) << GetParam() << " n=" << n;
  }
}

TEST_P(EveryCodec, LengthsThatAreNotMultiplesOfABucketRoundTrip) {
  const auto codec = Make(GetParam());
  for (size_t n : {2, 63, 65, 127, 1000, 4097}) {
    const auto x = Gaussian(n, n);
    const auto y = Decode(*codec, Encode(*codec, x), n);
    // A generic sanity bound for every codec: no decoded error exceeds the vector's norm.
    const double norm = L2(x);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_TRUE(std::isfinite(y[i]));
      ASSERT_LE(std::fabs(double(y[i]) - x[i]), norm) << GetParam() << " n=" << n << " i=" << i;
    }
  }
}

TEST_P(EveryCodec, SameSeedSamePayload) {
  const auto codec = Make(GetParam());
  const auto x = Gaussian(777, 3);
  EXPECT_EQ(Encode(*codec, x, 11), Encode(*codec, x, 11));
}

TEST_P(EveryCodec, NonFiniteInputIsAClearError) {
  const auto codec = Make(GetParam());
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    auto x = Gaussian(300, 5);
    x[205] = bad;
    Bytes out = {std::byte{1}, std::byte{2}};
    const Status s = codec->Encode(x, 1, out);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << GetParam();
    EXPECT_NE(s.message().find("value 205 of 300"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("not finite"), std::string::npos) << s.message();
    EXPECT_EQ(out.size(), 2u) << "a failed Encode must leave the output as it was";
  }
}

TEST_P(EveryCodec, TruncatedExtendedAndMiscountedPayloadsAreRejected) {
  const auto codec = Make(GetParam());
  const size_t n = 130;
  const Bytes payload = Encode(*codec, Gaussian(n, 9));
  std::vector<float> out(n);
  for (size_t len = 0; len < payload.size(); ++len) {
    const Status s = codec->Decode(std::span(payload).first(len), out);
    ASSERT_EQ(s.code(), StatusCode::kDataLoss) << GetParam() << " truncated to " << len;
  }
  Bytes longer = payload;
  longer.push_back(std::byte{0});
  EXPECT_EQ(codec->Decode(longer, out).code(), StatusCode::kDataLoss) << GetParam();
  // The declared count must match what the caller expects, in both directions.
  std::vector<float> fewer(n - 1), more(n + 1);
  EXPECT_EQ(codec->Decode(payload, fewer).code(), StatusCode::kDataLoss);
  EXPECT_EQ(codec->Decode(payload, more).code(), StatusCode::kDataLoss);
  // A count that lies about the payload (and about the model).
  Bytes lying = payload;
  internal::StoreU32(lying.data(), n + 1);
  EXPECT_EQ(codec->Decode(lying, out).code(), StatusCode::kDataLoss);
}

TEST_P(EveryCodec, CorruptPayloadsFailCleanlyOrDecodeToFiniteValues) {
  const auto codec = Make(GetParam());
  const size_t n = 200;
  const Bytes payload = Encode(*codec, Gaussian(n, 4));
  std::mt19937_64 gen(99);
  std::vector<float> out(n);
  int rejected = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    Bytes bad = payload;
    const int flips = 1 + static_cast<int>(gen() % 3);
    for (int f = 0; f < flips; ++f) {
      bad[gen() % bad.size()] ^= std::byte{static_cast<unsigned char>(1u << (gen() % 8))};
    }
    const Status s = codec->Decode(bad, out);
    if (!s.ok()) {
      ASSERT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
      ++rejected;
      continue;
    }
    for (float v : out) ASSERT_TRUE(std::fabs(v) <= 1.0001e38f) << GetParam() << " " << v;
  }
  // Flipping a header bit (count, width, bucket, k...) must always be caught.
  EXPECT_GT(rejected, 0) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Codecs, EveryCodec, ::testing::ValuesIn(kSpecs), [](const auto& info) {
  std::string name = info.param;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
});

// ---- none and fp16 ----

TEST(NoneCodecTest, RoundTripIsBitExact) {
  const auto codec = Make("none");
  std::vector<float> x = Gaussian(1000, 1);
  x[0] = -0.0f;
  x[1] = std::numeric_limits<float>::denorm_min();
  x[2] = 1e38f;  // the largest magnitude a payload may carry (so weighted sums stay finite)
  x[3] = -1e38f;
  const Bytes payload = Encode(*codec, x);
  EXPECT_EQ(payload.size(), 4 + 4 * x.size());
  const auto y = Decode(*codec, payload, x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(y[i]), std::bit_cast<uint32_t>(x[i])) << i;
  }
}

TEST(NoneCodecTest, MagnitudesBeyondTheLimitAreRejected) {
  const auto codec = Make("none");
  const std::vector<float> x = {1, std::numeric_limits<float>::max()};
  std::vector<std::byte> out;
  const Status s = codec->Encode(x, 0, out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("value 1 of 2"), std::string::npos) << s.message();
  std::vector<float> y(2);
  const std::vector<float> ok = {1, 2};
  out = Encode(*codec, ok);
  internal::StoreF32(out.data() + 8, -3e38f);
  EXPECT_EQ(codec->Decode(out, y).code(), StatusCode::kDataLoss);
}

TEST(NoneCodecTest, NonFinitePayloadIsRejected) {
  const auto codec = Make("none");
  const std::vector<float> x = {1, 2, 3};
  Bytes payload = Encode(*codec, x);
  internal::StoreF32(payload.data() + 8, std::numeric_limits<float>::quiet_NaN());
  std::vector<float> out(3);
  EXPECT_EQ(codec->Decode(payload, out).code(), StatusCode::kDataLoss);
}

TEST(Fp16CodecTest, RelativeErrorIsAtMostHalfAnUlpAndLargeValuesClamp) {
  const auto codec = Make("fp16");
  std::vector<float> x;
  for (float v = 1e-9f; v < 1e6f; v *= 1.0137f) {
    x.push_back(v);
    x.push_back(-v * 1.0001f);
  }
  const Bytes payload = Encode(*codec, x);
  EXPECT_EQ(payload.size(), 4 + 2 * x.size());
  const auto y = Decode(*codec, payload, x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const float a = std::fabs(x[i]);
    if (a > 65504.0f) {
      ASSERT_EQ(y[i], std::copysign(65504.0f, x[i])) << x[i];  // clamped, not infinite
    } else if (a >= 0x1p-14f) {
      ASSERT_LE(std::fabs(y[i] - x[i]), a * 0x1p-11f) << x[i];  // normal halves: 11-bit mantissa
    } else {
      ASSERT_LE(std::fabs(y[i] - x[i]), 0x1p-25f) << x[i];  // subnormal halves: step 2^-24
    }
  }
}

TEST(Fp16CodecTest, NanOrInfinityInAPayloadIsRejected) {
  const auto codec = Make("fp16");
  const std::vector<float> x = {1, 2};
  for (uint16_t h : {0x7c00, 0xfc00, 0x7e00}) {
    Bytes payload = Encode(*codec, x);
    internal::StoreU16(payload.data() + 6, h);
    std::vector<float> out(2);
    EXPECT_EQ(codec->Decode(payload, out).code(), StatusCode::kDataLoss) << h;
  }
}

TEST(Fp16CodecTest, SoftwareConversionsMatchIeee) {
  // Every half decodes to the value its bits denote.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = internal::FloatFromHalfSoft(static_cast<uint16_t>(h));
    const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    const double magnitude =
        e == 0 ? std::ldexp(double(m), -24) : std::ldexp(1.0 + double(m) / 1024.0, int(e) - 15);
    if (e == 0x1f) {
      EXPECT_TRUE(m ? std::isnan(f) : std::isinf(f)) << h;
      continue;
    }
    ASSERT_EQ(double(f), (h & 0x8000) ? -magnitude : magnitude) << h;
    if (!std::isnan(f)) {
      ASSERT_EQ(internal::HalfFromFloatSoft(f), h) << "half " << h << " does not round-trip";
    }
  }
  // Float -> half rounds to nearest, ties to even: check midpoints and their neighbours.
  for (uint32_t h = 0; h < 0x7bff; ++h) {
    const float lo = internal::FloatFromHalfSoft(static_cast<uint16_t>(h));
    const float hi = internal::FloatFromHalfSoft(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((double(lo) + double(hi)) / 2);
    const uint16_t even = (h & 1) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h);
    ASSERT_EQ(internal::HalfFromFloatSoft(mid), even) << h;
    ASSERT_EQ(internal::HalfFromFloatSoft(std::nextafter(mid, 0.0f)), h) << h;
    ASSERT_EQ(internal::HalfFromFloatSoft(std::nextafter(mid, 1e9f)), h + 1) << h;
  }
  EXPECT_EQ(internal::HalfFromFloatSoft(65519.0f), 0x7bff);
  EXPECT_EQ(internal::HalfFromFloatSoft(65520.0f), 0x7c00);
  EXPECT_EQ(internal::HalfFromFloatSoft(0x1p-25f), 0x0000);
  EXPECT_EQ(internal::HalfFromFloatSoft(std::nextafter(0x1p-25f, 1.0f)), 0x0001);
#if defined(__FLT16_MAX__)
  // And they agree with the compiler's conversions on a sweep of float bit patterns.
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 4099) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(bits));
    if (std::isnan(f)) continue;
    ASSERT_EQ(internal::HalfFromFloatSoft(f), std::bit_cast<uint16_t>(static_cast<_Float16>(f)))
        << f;
  }
#endif
}

// ---- uint8 ----

TEST(Uint8CodecTest, MeanStdErrorIsAtMostHalfAStepInsideTheRange) {
  const auto codec = Make("uint8:mode=meanstd,k=3");
  auto x = Gaussian(5000, 2, 0.01f);
  for (float& v : x) v += 0.003f;  // an offset: the range is centred on the mean
  const Bytes payload = Encode(*codec, x);
  EXPECT_EQ(payload.size(), 16 + x.size());
  const float lo = internal::LoadF32(payload.data() + 8),
              step = internal::LoadF32(payload.data() + 12);
  const auto y = Decode(*codec, payload, x.size());
  int clamped = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float hi = lo + 255 * step;
    if (x[i] < lo || x[i] > hi) {  // beyond 3 sigma: clamped to the range's end
      ++clamped;
      ASSERT_EQ(y[i], x[i] < lo ? lo : lo + 255.0f * step);
      continue;
    }
    // Half a step, plus float rounding of (x - lo) / step and of lo + q * step.
    ASSERT_LE(std::fabs(y[i] - x[i]), 0.5f * step * 1.001f + 1e-8f) << i;
  }
  EXPECT_GT(clamped, 0);  // 3 sigma: some of 5000 Gaussian values are outside
  EXPECT_LT(clamped, 50);
}

TEST(Uint8CodecTest, BlockErrorIsAtMostHalfAStepOfEachBlock) {
  const auto codec = Make("uint8:block=256");
  auto x = Gaussian(1000, 8);
  for (size_t i = 256; i < 512; ++i) x[i] *= 1000;  // blocks with very different scales
  const Bytes payload = Encode(*codec, x);
  EXPECT_EQ(payload.size(), 12 + 4 * 4 + x.size());
  const auto y = Decode(*codec, payload, x.size());
  for (size_t b = 0; b * 256 < x.size(); ++b) {
    float absmax = 0;
    for (size_t i = b * 256; i < std::min(x.size(), b * 256 + 256); ++i) {
      absmax = std::max(absmax, std::fabs(x[i]));
    }
    for (size_t i = b * 256; i < std::min(x.size(), b * 256 + 256); ++i) {
      ASSERT_LE(std::fabs(y[i] - x[i]), absmax / 254 * 1.001f) << i;
    }
  }
}

TEST(Uint8CodecTest, MalformedPayloadsAreRejected) {
  const auto block = Make("uint8:block=64");
  const auto x = Gaussian(100, 1);
  std::vector<float> out(100);
  Bytes p = Encode(*block, x);
  p[12 + 8 + 5] = std::byte{255};  // code 255 is outside 0..254
  EXPECT_EQ(block->Decode(p, out).code(), StatusCode::kDataLoss);
  p = Encode(*block, x);
  internal::StoreU32(p.data() + 8, 32);  // another block size
  EXPECT_EQ(block->Decode(p, out).code(), StatusCode::kDataLoss);
  p = Encode(*block, x);
  internal::StoreF32(p.data() + 12, -1.0f);  // negative max
  EXPECT_EQ(block->Decode(p, out).code(), StatusCode::kDataLoss);
  // A meanstd payload given to a block-mode codec.
  const auto meanstd = Make("uint8:mode=meanstd");
  EXPECT_EQ(block->Decode(Encode(*meanstd, x), out).code(), StatusCode::kDataLoss);
  p = Encode(*meanstd, x);
  internal::StoreF32(p.data() + 12, std::numeric_limits<float>::infinity());
  EXPECT_EQ(meanstd->Decode(p, out).code(), StatusCode::kDataLoss);
}

// ---- the QSGD family ----

TEST(QsgdCodecTest, ZeroAndTopLevelsAreExact) {
  // The study's codec had no code for the top level and decoded level 0 as 1.
  for (const std::string spec : {"qsgd", "qsgd-elias", "qsgd-elias:code=omega", "qsgd-linf"}) {
    const auto codec = Make(spec);
    const std::vector<float> x = {0, 0, -3, 0, 0};  // norm = max = 3: level s exactly, rest 0
    const auto y = Decode(*codec, Encode(*codec, x), x.size());
    for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], x[i], 3e-6f) << spec << " " << i;
  }
}

TEST(QsgdCodecTest, EveryValueIsWithinOneLevelOfItsInput) {
  for (const std::string spec : {"qsgd:bits=4,bucket=128", "qsgd-elias:bits=3,bucket=64",
                                 "qsgd-linf:bits=5,bucket=192", "qsgd:bits=8"}) {
    const auto codec = Make(spec);
    const int bits = static_cast<int>(codec->config().params.at("bits"));
    const size_t bucket = static_cast<size_t>(codec->config().params.at("bucket"));
    const auto x = Gaussian(1000, 12);
    const auto y = Decode(*codec, Encode(*codec, x), x.size());
    const size_t b = bucket ? bucket : x.size();
    for (size_t start = 0; start < x.size(); start += b) {
      const auto part = std::span(x).subspan(start, std::min(b, x.size() - start));
      double scale = 0;
      if (spec.starts_with("qsgd-linf")) {
        for (float v : part) scale = std::max(scale, double(std::fabs(v)));
      } else {
        scale = L2(part);
      }
      const double level = scale / ((1 << bits) - 1);
      for (size_t i = start; i < start + part.size(); ++i) {
        ASSERT_LE(std::fabs(double(y[i]) - x[i]), level * (1 + 1e-5)) << spec << " " << i;
        ASSERT_TRUE(y[i] == 0 || std::signbit(y[i]) == std::signbit(x[i])) << spec << " " << i;
      }
    }
  }
}

TEST(QsgdCodecTest, PayloadSizes) {
  const size_t n = 1 << 20;
  const auto x = Gaussian(n, 1);
  // 8 level bits + 1 sign bit per value, plus a 12-byte header and one norm.
  const Bytes q8 = Encode(*Make("qsgd"), x);
  EXPECT_EQ(q8.size(), 12 + 4 + n / 8 + n);
  EXPECT_LE(8.0 * q8.size() / n, 9.001);
  EXPECT_EQ(Encode(*Make("qsgd:bits=4,bucket=512"), x).size(), 12 + 4 * (n / 512) + n / 8 + n / 2);
  EXPECT_EQ(Encode(*Make("qsgd-linf:bits=7"), x).size(), 12 + 4 + n);
  EXPECT_EQ(Encode(*Make("qsgd-linf"), x).size(), 12 + 4 + 2 * n);
}

TEST(QsgdCodecTest, EliasAndFixedWidthCarryTheSameLevels) {
  // Same quantiser, same seed: the two wire formats must decode to the same bits.
  const auto x = Gaussian(3000, 21);
  for (const std::string params : {":bits=8", ":bits=2,bucket=64", ":bits=16,bucket=448"}) {
    const auto fixed = Make("qsgd" + params);
    for (const std::string code :
         {",code=gamma", ",code=omega", ",code=gamma,order=1", ",code=omega,order=3"}) {
      const auto elias = Make("qsgd-elias" + params + code);
      for (uint64_t seed : {1, 2, 3}) {
        const auto a = Decode(*fixed, Encode(*fixed, x, seed), x.size());
        const auto b = Decode(*elias, Encode(*elias, x, seed), x.size());
        ASSERT_EQ(a, b) << params << code << " seed " << seed;
      }
    }
  }
}

// Known codes (REFERENCE.md Part A 3.1 for omega): the low `length` bits, MSB first.
TEST(EliasTest, KnownCodes) {
  auto str = [](internal::EliasCode c) {
    std::string s;
    for (int i = c.length - 1; i >= 0; --i) s += ((c.bits >> i) & 1) ? '1' : '0';
    return s;
  };
  EXPECT_EQ(str(internal::EliasOmega(1)), "0");
  EXPECT_EQ(str(internal::EliasOmega(2)), "100");
  EXPECT_EQ(str(internal::EliasOmega(3)), "110");
  EXPECT_EQ(str(internal::EliasOmega(4)), "101000");
  EXPECT_EQ(str(internal::EliasOmega(8)), "1110000");
  EXPECT_EQ(str(internal::EliasOmega(255)), "10111111111110");
  EXPECT_EQ(str(internal::EliasOmega(256)), "1110001000000000");
  EXPECT_EQ(str(internal::EliasGamma(1)), "1");
  EXPECT_EQ(str(internal::EliasGamma(2)), "010");
  EXPECT_EQ(str(internal::EliasGamma(5)), "00101");
  EXPECT_EQ(str(internal::EliasGamma(256)), "00000000100000000");
}

// A qsgd-elias payload written by hand: every level 0..2^bits - 1 once, signs alternating, with
// norm = s so that a level decodes to itself.
// With order k > 0 the Elias code is of (level >> k) + 1, followed by the level's k low bits.
Bytes EveryLevelPayload(int bits, bool omega, int order = 0) {
  const uint32_t s = (1u << bits) - 1, n = s + 1;
  std::vector<std::byte> stream(8 * (size_t{n} * 60 / 64 + 2));
  internal::BitWriter w(stream.data());
  for (uint32_t level = 0; level <= s; ++level) {
    const uint32_t q = (level >> order) + 1;
    auto c = omega ? internal::EliasOmega(q) : internal::EliasGamma(q);
    w.Put(c.bits, c.length);
    if (order) w.Put(level & ((1u << order) - 1), order);
    if (level) w.Put(level & 1, 1);
  }
  const uint64_t nbits = w.Finish();
  Bytes p(12 + 4 + 8);
  internal::StoreU32(p.data(), n);
  p[4] = std::byte{static_cast<uint8_t>(bits)};
  p[5] = std::byte{static_cast<uint8_t>(omega)};
  internal::StoreU16(p.data() + 6, static_cast<uint16_t>(order));
  internal::StoreF32(p.data() + 12, static_cast<float>(s));
  internal::StoreU64(p.data() + 16, nbits);
  p.insert(p.end(), stream.begin(), stream.begin() + static_cast<ptrdiff_t>((nbits + 7) / 8));
  return p;
}

TEST(EliasTest, EveryLevelDecodesBack) {
  for (int bits : {1, 2, 8, 16}) {
    for (bool omega : {false, true}) {
      for (int order : {0, 1, 3, 15}) {
        const auto codec = Make(fmt::format("qsgd-elias:bits={},code={},order={}", bits,
                                            omega ? "omega" : "gamma", order));
        const Bytes p = EveryLevelPayload(bits, omega, order);
        const uint32_t n = 1u << bits;
        const auto y = Decode(*codec, p, n);
        for (uint32_t level = 0; level < n; ++level) {
          const float expected = (level & 1) ? -float(level) : float(level);
          ASSERT_EQ(y[level], expected)
              << "bits " << bits << " omega " << omega << " order " << order;
        }
      }
    }
  }
}

TEST(EliasTest, MalformedStreamsAreRejected) {
  const auto gamma = Make("qsgd-elias:bits=2");  // levels 0..3, codes of 1..4
  const auto omega = Make("qsgd-elias:bits=2,code=omega");
  std::vector<float> out(4);
  auto expect_rejected = [&](const Codec& codec, Bytes p, const std::string& what) {
    const Status s = codec.Decode(p, out);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << what;
    return s.message();
  };
  const Bytes good = EveryLevelPayload(2, false);
  ASSERT_TRUE(gamma->Decode(good, out).ok());
  // Stream length that lies: shorter, longer (with a matching body), and impossible.
  Bytes p = good;
  internal::StoreU64(p.data() + 16, internal::LoadU64(p.data() + 16) - 1);
  expect_rejected(*gamma, p, "one bit short");
  p = good;
  internal::StoreU64(p.data() + 16, internal::LoadU64(p.data() + 16) + 8);
  p.push_back(std::byte{0});
  expect_rejected(*gamma, p, "one byte long");
  p = good;
  internal::StoreU64(p.data() + 16, uint64_t{1} << 40);
  expect_rejected(*gamma, p, "huge");
  // Level 4 > s = 3: gamma code of 5 = "00101".
  Bytes q(12 + 4 + 8);
  internal::StoreU32(q.data(), 4);
  q[4] = std::byte{2};
  internal::StoreF32(q.data() + 12, 3.0f);
  std::vector<std::byte> stream(16);
  internal::BitWriter w(stream.data());
  for (int i = 0; i < 3; ++i) w.Put(1, 1);  // three zero levels
  w.Put(5, 5);                              // level 4
  w.Put(0, 1);                              // its sign
  const uint64_t nbits = w.Finish();
  internal::StoreU64(q.data() + 16, nbits);
  q.insert(q.end(), stream.begin(), stream.begin() + static_cast<ptrdiff_t>((nbits + 7) / 8));
  EXPECT_NE(expect_rejected(*gamma, q, "level above s").find("above the top level 3"),
            std::string::npos);
  // A gamma code with more leading zeros than any level has: all-zero stream.
  Bytes z(12 + 4 + 8 + 2);
  internal::StoreU32(z.data(), 4);
  z[4] = std::byte{2};
  internal::StoreF32(z.data() + 12, 3.0f);
  internal::StoreU64(z.data() + 16, 16);
  EXPECT_NE(expect_rejected(*gamma, z, "zeros").find("leading zeros"), std::string::npos);
  // Omega: all-ones is a code that never ends.
  Bytes o = z;
  o[5] = std::byte{1};
  o[24] = o[25] = std::byte{0xff};
  EXPECT_NE(expect_rejected(*omega, o, "omega ones").find("omega code longer"), std::string::npos);
  // Nonzero padding after the stream.
  p = good;
  ASSERT_NE(internal::LoadU64(p.data() + 16) % 8, 0u);
  p.back() |= std::byte{1};
  expect_rejected(*gamma, p, "padding");
  // A gamma payload given to the omega codec, to another order, and another width.
  expect_rejected(*omega, good, "gamma as omega");
  expect_rejected(*Make("qsgd-elias:bits=2,order=1"), good, "order 0 as order 1");
  std::vector<float> out8(4);
  EXPECT_EQ(Make("qsgd-elias:bits=3")->Decode(good, out8).code(), StatusCode::kDataLoss);
}

TEST(QsgdCodecTest, MalformedFixedWidthPayloadsAreRejected) {
  const auto codec = Make("qsgd:bits=4,bucket=64");
  const auto x = Gaussian(100, 3);
  std::vector<float> out(100);
  const Bytes good = Encode(*codec, x);
  ASSERT_TRUE(codec->Decode(good, out).ok());
  Bytes p = good;
  p[4] = std::byte{5};  // wrong level width
  EXPECT_NE(codec->Decode(p, out).message().find("5-bit levels"), std::string::npos);
  p = good;
  internal::StoreU32(p.data() + 8, 128);  // wrong bucket
  EXPECT_EQ(codec->Decode(p, out).code(), StatusCode::kDataLoss);
  p = good;
  internal::StoreF32(p.data() + 16, std::numeric_limits<float>::quiet_NaN());  // second norm
  EXPECT_NE(codec->Decode(p, out).message().find("norm of bucket 1"), std::string::npos);
  p = good;
  internal::StoreF32(p.data() + 12, -1.0f);
  EXPECT_EQ(codec->Decode(p, out).code(), StatusCode::kDataLoss);
  p = good;
  p.back() |= std::byte{0x80};  // a level bit after the last value
  EXPECT_NE(codec->Decode(p, out).message().find("after its last value"), std::string::npos);
  p = good;
  p[12 + 8 + 8 + 7] |= std::byte{0x80};  // sign bit 63 of the second sign word: value 127
  EXPECT_EQ(codec->Decode(p, out).code(), StatusCode::kDataLoss);
  // A payload of another codec of the family.
  EXPECT_EQ(codec->Decode(Encode(*Make("qsgd-linf:bits=4,bucket=64"), x), out).code(),
            StatusCode::kDataLoss);
}

TEST(QsgdCodecTest, LinfLevelsBeyondTheTopAreRejected) {
  const auto codec = Make("qsgd-linf:bits=3");  // levels -7..7 in int8
  const auto x = Gaussian(10, 3);
  Bytes p = Encode(*codec, x);
  std::vector<float> out(10);
  ASSERT_TRUE(codec->Decode(p, out).ok());
  p[16 + 4] = std::byte{8};
  EXPECT_NE(codec->Decode(p, out).message().find("level 8"), std::string::npos);
  p[16 + 4] = std::byte{static_cast<unsigned char>(-100)};
  EXPECT_EQ(codec->Decode(p, out).code(), StatusCode::kDataLoss);
}

// ---- topk ----

TEST(TopkCodecTest, KeepsTheLargestMagnitudesExactly) {
  const auto codec = Make("topk:ratio=0.1,ef=0");
  auto x = Gaussian(1000, 5);
  x[10] = x[11] = 50.0f;  // ties: both kept (they are the largest)
  const Bytes payload = Encode(*codec, x);
  EXPECT_EQ(payload.size(), 8 + 8 * 100u);
  const auto y = Decode(*codec, payload, x.size());
  std::vector<float> sorted(x.size());
  for (size_t i = 0; i < x.size(); ++i) sorted[i] = std::fabs(x[i]);
  std::sort(sorted.rbegin(), sorted.rend());
  const float threshold = sorted[99];
  int kept = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (y[i] != 0) {
      ++kept;
      ASSERT_EQ(y[i], x[i]);
      ASSERT_GE(std::fabs(x[i]), threshold);
    } else {
      ASSERT_LE(std::fabs(x[i]), threshold);
    }
  }
  EXPECT_EQ(kept, 100);
}

TEST(TopkCodecTest, TiesGoToTheLowerIndex) {
  const auto codec = Make("topk:ratio=0.25");
  const std::vector<float> x = {1, -2, 2, 2, 1, 0, 2, 1};  // k = 2 of four 2s
  const auto y = Decode(*codec, Encode(*codec, x), x.size());
  EXPECT_EQ(y, (std::vector<float>{0, -2, 2, 0, 0, 0, 0, 0}));
}

TEST(TopkCodecTest, MalformedPayloadsAreRejected) {
  const auto codec = Make("topk:ratio=0.05");
  const auto x = Gaussian(100, 5);  // k = 5
  const Bytes good = Encode(*codec, x);
  std::vector<float> out(100);
  ASSERT_TRUE(codec->Decode(good, out).ok());
  Bytes p = good;
  internal::StoreU32(p.data() + 4, 6);  // k that lies
  EXPECT_NE(codec->Decode(p, out).message().find("declares 6 values"), std::string::npos);
  p = good;
  internal::StoreU32(p.data() + 8 + 4, internal::LoadU32(p.data() + 8));  // duplicate index
  EXPECT_NE(codec->Decode(p, out).message().find("not increasing"), std::string::npos);
  p = good;
  internal::StoreU32(p.data() + 8 + 16, 100);  // index out of range
  EXPECT_EQ(codec->Decode(p, out).code(), StatusCode::kDataLoss);
  p = good;
  internal::StoreF32(p.data() + 8 + 20, std::numeric_limits<float>::infinity());
  EXPECT_EQ(codec->Decode(p, out).code(), StatusCode::kDataLoss);
}

TEST(RoundSeedTest, DependsOnEveryInput) {
  const uint64_t base = RoundSeed(1, 0, 1, 0);
  EXPECT_EQ(base, RoundSeed(1, 0, 1, 0));
  EXPECT_NE(base, RoundSeed(2, 0, 1, 0));
  EXPECT_NE(base, RoundSeed(1, 1, 1, 0));
  EXPECT_NE(base, RoundSeed(1, 0, 2, 0));
  EXPECT_NE(base, RoundSeed(1, 0, 1, 1));
  EXPECT_NE(RoundSeed(1, 0, 0, 1), RoundSeed(1, 0, 1, 0));
}

}  // namespace
}  // namespace p2p::sync::codecs
