#include "broker/envelope.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <msgpack.hpp>
#include <random>
#include <utility>

// ---------------------------------------------------------------- allocation probe
// glibc lets an executable interpose malloc; operator new and msgpack's zone both end up here.
// While g_probe is on (in the probing thread only), the largest single request is recorded, so
// the tests can assert that hostile lengths never turn into big allocations. Sanitizers bring
// their own malloc, so the probe is compiled out under them.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define P2P_ALLOC_PROBE 0
#else
#define P2P_ALLOC_PROBE 1
#endif
namespace {
thread_local bool g_probe = false;
thread_local size_t g_largest = 0;
}  // namespace
#if P2P_ALLOC_PROBE
extern "C" void* __libc_malloc(size_t);
extern "C" void* malloc(size_t n) {
  if (g_probe && n > g_largest) g_largest = n;
  return __libc_malloc(n);
}
#endif

namespace p2p::broker {
namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;
using Writer = std::function<void(Packer&)>;

Bytes B(std::string_view s) {
  Bytes b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}

Bytes FromBuffer(const msgpack::sbuffer& buf) {
  const auto* p = reinterpret_cast<const std::byte*>(buf.data());
  return Bytes(p, p + buf.size());
}

Envelope FullEnvelope() {
  Envelope e;
  e.run_id = "run-42";
  e.type = MessageType::kGradient;
  e.sender = 3;
  e.receiver = kAllRanks;
  e.epoch = 7;
  e.step = std::numeric_limits<uint64_t>::max();
  e.seq = 123456789012345ull;
  e.codec = {"qsgd", {{"levels", 256}, {"ratio", 0.125}, {"neg", -3.5}}};
  e.body = B("gradient bytes \x01\x02");
  e.signature = B("sig");
  return e;
}

// A hand-built envelope map: the canonical fields as (key, writer) pairs that tests can edit.
std::vector<std::pair<std::string, Writer>> CanonicalFields() {
  auto str = [](std::string s) { return [s](Packer& pk) { pk.pack(s); }; };
  auto uint = [](uint64_t v) { return [v](Packer& pk) { pk.pack_uint64(v); }; };
  return {{"v", uint(1)},
          {"run", str("r")},
          {"type", uint(4)},
          {"from", uint(1)},
          {"to", uint(2)},
          {"epoch", uint(0)},
          {"step", uint(0)},
          {"seq", uint(0)},
          {"codec", str("")},
          {"cparams", [](Packer& pk) { pk.pack_map(0); }},
          {"body", [](Packer& pk) { pk.pack_bin(0); }},
          {"sig", [](Packer& pk) { pk.pack_bin(0); }}};
}

Bytes PackFields(const std::vector<std::pair<std::string, Writer>>& fields) {
  msgpack::sbuffer buf;
  Packer pk(buf);
  pk.pack_map(static_cast<uint32_t>(fields.size()));
  for (const auto& [key, write] : fields) {
    pk.pack(key);
    write(pk);
  }
  return FromBuffer(buf);
}

Bytes WithField(std::string_view key, Writer w) {
  auto fields = CanonicalFields();
  for (auto& [k, writer] : fields) {
    if (k == key) writer = std::move(w);
  }
  return PackFields(fields);
}

// Decodes with the allocation probe on; fails the test if any single allocation exceeded 1 MiB.
Result<Envelope> ProbedDecode(std::span<const std::byte> data, EnvelopeLimits limits = {}) {
  g_largest = 0;
  g_probe = true;
  Result<Envelope> r = DecodeEnvelope(data, limits);
  g_probe = false;
  if (P2P_ALLOC_PROBE) {
    EXPECT_LT(g_largest, size_t{1} << 20) << "largest allocation while decoding";
  }
  return r;
}

void ExpectRejected(const Bytes& data, StatusCode code, std::string_view mention) {
  Result<Envelope> r = ProbedDecode(data);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), code) << r.status().ToString();
  EXPECT_NE(r.status().message().find(mention), std::string::npos) << r.status().ToString();
}

TEST(EnvelopeTest, RoundTripsEveryField) {
  const Envelope e = FullEnvelope();
  Result<Bytes> wire = EncodeEnvelope(e);
  ASSERT_TRUE(wire.ok()) << wire.status().ToString();
  Result<Envelope> back = ProbedDecode(*wire);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, e);
}

TEST(EnvelopeTest, RoundTripsTheViewAndOmitsViewZero) {
  Envelope e = FullEnvelope();
  e.view = 7;
  Result<Envelope> back = DecodeEnvelope(*EncodeEnvelope(e));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->view, 7u);
  // View 0 (every run until a member fails) is encoded without the key: the bytes are exactly
  // those of an envelope from before membership existed.
  e.view = 0;
  const Bytes wire = *EncodeEnvelope(e);
  const std::string text(reinterpret_cast<const char*>(wire.data()), wire.size());
  EXPECT_EQ(text.find("view"), std::string::npos);
  e.view = 7;
  EXPECT_EQ(EncodeEnvelope(e)->size(), wire.size() + 6) << "\"view\" (5 bytes) and 7 (1 byte)";
}

TEST(EnvelopeTest, RejectsAnExplicitViewZero) {
  auto fields = CanonicalFields();
  fields.emplace_back("view", [](Packer& pk) { pk.pack_uint64(0); });
  ExpectRejected(PackFields(fields), StatusCode::kInvalidArgument, "view");
}

TEST(EnvelopeTest, RoundTripsEveryTypeAndRankBound) {
#define P2P_TEST_TYPE(en, v, n) MessageType::en,
  const MessageType types[] = {P2P_ENVELOPE_TYPES(P2P_TEST_TYPE)};
#undef P2P_TEST_TYPE
  for (MessageType t : types) {
    Envelope e = FullEnvelope();
    e.type = t;
    e.sender = kMaxRank;
    e.receiver = 0;
    e.codec = {};
    e.body.clear();
    e.signature.clear();
    Result<Envelope> back = DecodeEnvelope(*EncodeEnvelope(e));
    ASSERT_TRUE(back.ok()) << MessageTypeName(t) << ": " << back.status().ToString();
    EXPECT_EQ(*back, e);
    EXPECT_EQ(*MessageTypeFromName(MessageTypeName(t)), t);
  }
  EXPECT_FALSE(MessageTypeFromName("NOPE").ok());
}

TEST(EnvelopeTest, AcceptsFieldsInAnyOrder) {
  auto fields = CanonicalFields();
  std::reverse(fields.begin(), fields.end());
  Result<Envelope> r = DecodeEnvelope(PackFields(fields));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->run_id, "r");
  EXPECT_EQ(r->type, MessageType::kGradient);
  EXPECT_EQ(r->receiver, 2);
}

TEST(EnvelopeTest, SigningBytesCoverEverythingButTheSignature) {
  const Envelope e = FullEnvelope();
  Envelope unsigned_copy = e;
  unsigned_copy.signature.clear();
  EXPECT_EQ(SigningBytes(e), SigningBytes(unsigned_copy));

  Bytes pieces;
  VisitSigningBytes(
      e, [&](std::span<const std::byte> p) { pieces.insert(pieces.end(), p.begin(), p.end()); });
  EXPECT_EQ(pieces, SigningBytes(e));

  const std::vector<std::function<void(Envelope&)>> mutations = {
      [](Envelope& x) { x.run_id = "run-43"; },
      [](Envelope& x) { x.type = MessageType::kAggregate; },
      [](Envelope& x) { x.sender = 4; },
      [](Envelope& x) { x.receiver = 0; },
      [](Envelope& x) { x.epoch++; },
      [](Envelope& x) { x.step--; },
      [](Envelope& x) { x.seq++; },
      [](Envelope& x) { x.codec.id = "fp16"; },
      [](Envelope& x) { x.codec.params["levels"] = 16; },
      [](Envelope& x) { x.body.back() = std::byte{9}; }};
  std::vector<Bytes> seen{SigningBytes(e)};
  for (const auto& mutate : mutations) {
    Envelope m = e;
    mutate(m);
    Bytes signed_bytes = SigningBytes(m);
    EXPECT_EQ(std::count(seen.begin(), seen.end(), signed_bytes), 0)
        << "a field is not covered by the signature";
    seen.push_back(std::move(signed_bytes));
  }
}

TEST(EnvelopeTest, EncodeRejectsOutOfBoundFields) {
  Envelope e = FullEnvelope();
  e.run_id.clear();
  EXPECT_EQ(EncodeEnvelope(e).status().code(), StatusCode::kInvalidArgument);
  e = FullEnvelope();
  e.run_id.assign(kMaxRunIdBytes + 1, 'x');
  EXPECT_FALSE(EncodeEnvelope(e).ok());
  e = FullEnvelope();
  e.receiver = -2;
  EXPECT_FALSE(EncodeEnvelope(e).ok());
  e = FullEnvelope();
  e.signature.resize(kMaxSignatureBytes + 1);
  EXPECT_FALSE(EncodeEnvelope(e).ok());
  e = FullEnvelope();
  e.codec.params["bad"] = std::nan("");
  EXPECT_FALSE(EncodeEnvelope(e).ok());
}

TEST(EnvelopeTest, RejectsEmptyAndEveryTruncation) {
  ExpectRejected({}, StatusCode::kDataLoss, "empty");
  const Bytes wire = *EncodeEnvelope(FullEnvelope());
  for (size_t n = 1; n < wire.size(); ++n) {
    Result<Envelope> r = ProbedDecode(std::span(wire).first(n));
    ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes accepted";
  }
}

TEST(EnvelopeTest, RejectsTrailingBytesAndNonMapRoot) {
  Bytes wire = *EncodeEnvelope(FullEnvelope());
  wire.push_back(std::byte{0xc0});
  ExpectRejected(wire, StatusCode::kDataLoss, "trailing");
  msgpack::sbuffer buf;
  Packer(buf).pack_array(2).pack_uint8(1).pack_uint8(2);
  ExpectRejected(FromBuffer(buf), StatusCode::kInvalidArgument, "<root>");
}

TEST(EnvelopeTest, RejectsLyingLengthsWithoutAllocating) {
  // {"body": bin32 claiming 4 GiB} in 20 bytes.
  Bytes lying_bin =
      B("\x81\xa4"
        "body"
        "\xc6\xff\xff\xff\xff"
        "abcdefghi");
  ASSERT_EQ(lying_bin.size(), 20u);
  ExpectRejected(lying_bin, StatusCode::kDataLoss, "truncated");
  // Root map32 / array32 / str32 claiming 4 billion entries or bytes.
  ExpectRejected(B("\xdf\xff\xff\xff\xff\xa1v\x01"), StatusCode::kInvalidArgument, "limit");
  ExpectRejected(B("\xdd\xff\xff\xff\xff\x01\x02"), StatusCode::kInvalidArgument, "limit");
  ExpectRejected(B("\x81\xa3run\xdb\xff\xff\xff\xff"
                   "abc"),
                 StatusCode::kDataLoss, "truncated");
  // The same lies inside an otherwise valid envelope.
  ExpectRejected(WithField("cparams", [](Packer& pk) { pk.pack_map(0xffffffff); }),
                 StatusCode::kInvalidArgument, "limit");
  ExpectRejected(WithField("sig", [](Packer& pk) { pk.pack_array(0xffffffff); }),
                 StatusCode::kInvalidArgument, "limit");
}

TEST(EnvelopeTest, AllocationProbeSeesBodies) {
  if (!P2P_ALLOC_PROBE) GTEST_SKIP() << "allocation probe disabled under sanitizers";
  Envelope e = FullEnvelope();
  e.body.resize(size_t{4} << 20);
  const Bytes wire = *EncodeEnvelope(e);
  g_largest = 0;
  g_probe = true;
  Result<Envelope> r = DecodeEnvelope(wire);
  g_probe = false;
  ASSERT_TRUE(r.ok());
  EXPECT_GE(g_largest, size_t{4} << 20);  // the probe works, so the "< 1 MiB" checks mean something
}

TEST(EnvelopeTest, DecodingAnOwnedBufferMovesItIntoTheBody) {
  Envelope e = FullEnvelope();
  e.body.resize(size_t{3} << 20);
  for (size_t i = 0; i < e.body.size(); ++i) e.body[i] = static_cast<std::byte>(i * 7);
  const Bytes wire = *EncodeEnvelope(e);
  Bytes owned = wire;
  const std::byte* memory = owned.data();
  Result<Envelope> r = DecodeEnvelope(std::move(owned));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, e);
  EXPECT_EQ(r->body.data(), memory);  // the wire buffer became the body: no copy
  // An empty body too.
  e.body.clear();
  Result<Envelope> empty = DecodeEnvelope(Bytes(*EncodeEnvelope(e)));
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ(*empty, e);
}

TEST(EnvelopeTest, DecodingAnOwnedBufferRejectsWhatTheViewRejects) {
  const Bytes wire = *EncodeEnvelope(FullEnvelope());
  for (size_t n = 0; n < wire.size(); ++n) {
    Result<Envelope> r = DecodeEnvelope(Bytes(wire.begin(), wire.begin() + n));
    ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes accepted";
  }
  Bytes trailing = wire;
  trailing.push_back(std::byte{0xc0});
  EXPECT_EQ(DecodeEnvelope(std::move(trailing)).status().code(), StatusCode::kDataLoss);
  Envelope big = FullEnvelope();
  big.body.resize(4096);
  Result<Envelope> over = DecodeEnvelope(Bytes(*EncodeEnvelope(big)), EnvelopeLimits{1024});
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("limit"), std::string::npos);
}

TEST(EnvelopeTest, RejectsUnknownVersion) {
  ExpectRejected(WithField("v", [](Packer& pk) { pk.pack_uint8(2); }), StatusCode::kInvalidArgument,
                 "'v'");
  auto fields = CanonicalFields();
  fields.erase(fields.begin());
  ExpectRejected(PackFields(fields), StatusCode::kInvalidArgument, "missing field 'v'");
}

TEST(EnvelopeTest, RejectsOversizedMessage) {
  Envelope e = FullEnvelope();
  e.body.resize(4096);
  const Bytes wire = *EncodeEnvelope(e);
  Result<Envelope> r = ProbedDecode(wire, EnvelopeLimits{1024});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("limit"), std::string::npos);
}

TEST(EnvelopeTest, RejectsWrongTypesNamingTheField) {
  const std::pair<std::string, Writer> cases[] = {
      {"run", [](Packer& pk) { pk.pack_uint8(1); }},
      {"type", [](Packer& pk) { pk.pack(std::string("GRADIENT")); }},
      {"from", [](Packer& pk) { pk.pack_double(1.5); }},
      {"to", [](Packer& pk) { pk.pack_nil(); }},
      {"epoch", [](Packer& pk) { pk.pack_int8(-1); }},
      {"step", [](Packer& pk) { pk.pack(std::string("1")); }},
      {"seq", [](Packer& pk) { pk.pack_true(); }},
      {"codec", [](Packer& pk) { pk.pack_bin(0); }},
      {"cparams", [](Packer& pk) { pk.pack_array(0); }},
      {"body", [](Packer& pk) { pk.pack(std::string("text")); }},
      {"sig", [](Packer& pk) { pk.pack_uint8(0); }},
  };
  for (const auto& [key, writer] : cases) {
    SCOPED_TRACE(key);
    ExpectRejected(WithField(key, writer), StatusCode::kInvalidArgument, "'" + key + "'");
  }
}

TEST(EnvelopeTest, RejectsOutOfRangeValuesNamingTheField) {
  const std::pair<std::string, Writer> cases[] = {
      {"run", [](Packer& pk) { pk.pack(std::string("")); }},
      {"run", [](Packer& pk) { pk.pack(std::string(kMaxRunIdBytes + 1, 'x')); }},
      {"type", [](Packer& pk) { pk.pack_uint8(0); }},
      {"type", [](Packer& pk) { pk.pack_uint8(99); }},
      {"from", [](Packer& pk) { pk.pack_int8(-1); }},
      {"from", [](Packer& pk) { pk.pack_uint32(kMaxRank + 1); }},
      {"to", [](Packer& pk) { pk.pack_int8(-2); }},
      {"codec", [](Packer& pk) { pk.pack(std::string(kMaxCodecIdBytes + 1, 'c')); }},
      {"cparams", [](Packer& pk) { pk.pack_map(1).pack(std::string("k")).pack_uint8(1); }},
      {"sig",
       [](Packer& pk) {
         pk.pack_bin(kMaxSignatureBytes + 1)
             .pack_bin_body(std::string(kMaxSignatureBytes + 1, 's').data(),
                            kMaxSignatureBytes + 1);
       }},
  };
  for (const auto& [key, writer] : cases) {
    SCOPED_TRACE(key);
    ExpectRejected(WithField(key, writer), StatusCode::kInvalidArgument, "'" + key + "'");
  }
}

TEST(EnvelopeTest, RejectsBadCodecParams) {
  auto with_params = [](Writer params) {
    auto fields = CanonicalFields();
    fields[8].second = [](Packer& pk) { pk.pack(std::string("qsgd")); };
    fields[9].second = std::move(params);
    return PackFields(fields);
  };
  ExpectRejected(
      with_params([](Packer& pk) { pk.pack_map(1).pack(std::string("s")).pack_double(NAN); }),
      StatusCode::kInvalidArgument, "not finite");
  ExpectRejected(
      with_params([](Packer& pk) { pk.pack_map(1).pack(std::string("s")).pack(std::string("x")); }),
      StatusCode::kInvalidArgument, "'cparams'");
  ExpectRejected(
      with_params([](Packer& pk) {
        pk.pack_map(2).pack(std::string("s")).pack_uint8(1).pack(std::string("s")).pack_uint8(2);
      }),
      StatusCode::kInvalidArgument, "duplicate key");
  // A container nested inside cparams goes past the depth limit.
  ExpectRejected(with_params([](Packer& pk) {
                   pk.pack_map(1).pack(std::string("s")).pack_map(1).pack_uint8(1).pack_uint8(1);
                 }),
                 StatusCode::kInvalidArgument, "limit");
  Result<Envelope> ok = DecodeEnvelope(
      with_params([](Packer& pk) { pk.pack_map(1).pack(std::string("s")).pack_float(0.5f); }));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->codec.params.at("s"), 0.5);
}

TEST(EnvelopeTest, RejectsUnknownDuplicateAndMissingKeys) {
  auto fields = CanonicalFields();
  fields.emplace_back("extra", [](Packer& pk) { pk.pack_uint8(1); });
  ExpectRejected(PackFields(fields), StatusCode::kInvalidArgument, "unknown field 'extra'");
  fields = CanonicalFields();
  fields.push_back(fields[3]);
  ExpectRejected(PackFields(fields), StatusCode::kInvalidArgument, "duplicate field 'from'");
  fields = CanonicalFields();
  fields.pop_back();
  ExpectRejected(PackFields(fields), StatusCode::kInvalidArgument, "missing field 'sig'");
  ExpectRejected(WithField("body", [](Packer& pk) { pk.pack_ext(1, 3).pack_ext_body("\x01", 1); }),
                 StatusCode::kInvalidArgument, "limit");
}

TEST(EnvelopeTest, SurvivesRandomCorruption) {
  const Bytes wire = *EncodeEnvelope(FullEnvelope());
  std::mt19937 rng(1234);
  int accepted = 0;
  for (int i = 0; i < 5000; ++i) {
    Bytes bad = wire;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) bad[rng() % bad.size()] = static_cast<std::byte>(rng());
    Result<Envelope> r = ProbedDecode(bad);
    if (r.ok()) {
      ++accepted;
      EXPECT_TRUE(ValidateEnvelope(*r).ok());  // anything accepted is within bounds
    }
  }
  EXPECT_LT(accepted, 5000);
}

}  // namespace
}  // namespace p2p::broker
