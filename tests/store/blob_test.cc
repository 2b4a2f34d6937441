#include "store/blob.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

namespace p2p::store {
namespace {

TEST(BlobTest, HeaderLayoutIsMagicVersionReservedCountLittleEndian) {
  const std::vector<float> v = {1.5f, -2.0f, 3.25f};
  const std::string blob = EncodeBlob(v);
  ASSERT_EQ(blob.size(), kBlobHeaderBytes + 12);
  EXPECT_EQ(blob.substr(0, 4), "P2PF");
  EXPECT_EQ(blob[4], 1);
  EXPECT_EQ(blob[5], 0);
  EXPECT_EQ(blob[6], 0);
  EXPECT_EQ(static_cast<uint8_t>(blob[7]), 3);
  EXPECT_EQ(blob[8], 0);
  float first;
  std::memcpy(&first, blob.data() + kBlobHeaderBytes, 4);
  EXPECT_EQ(first, 1.5f);
}

TEST(BlobTest, RoundTripKeepsEveryBit) {
  std::vector<float> v = {0.0f, -0.0f, std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::max(), 1e-30f};
  Result<std::vector<float>> back = DecodeBlob(EncodeBlob(v));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), v.size());
  EXPECT_EQ(std::memcmp(back->data(), v.data(), v.size() * 4), 0);
  EXPECT_TRUE(std::signbit((*back)[1]));
}

TEST(BlobTest, EmptyBlobIsValid) {
  Result<std::vector<float>> back = DecodeBlob(EncodeBlob({}));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->empty());
}

void ExpectBad(const std::string& blob, const std::string& words) {
  Result<uint32_t> r = ParseBlobHeader(blob);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(words), std::string::npos) << r.status().message();
}

TEST(BlobTest, RejectsWhatIsNotAValidBlobNamingTheProblem) {
  const std::string good = EncodeBlob(std::vector<float>{1, 2, 3});
  ExpectBad("P2P", "shorter than the 11-byte header");
  ExpectBad("XXXX" + good.substr(4), "bad magic");
  std::string v2 = good;
  v2[4] = 2;
  ExpectBad(v2, "version 2");
  std::string reserved = good;
  reserved[6] = 1;
  ExpectBad(reserved, "reserved");
  ExpectBad(good.substr(0, good.size() - 1), "says 3 floats but holds 11 bytes");
  ExpectBad(good + "xxxx", "says 3 floats but holds 16 bytes");
  std::string huge = good;
  const uint32_t count = kMaxBlobFloats + 1;
  std::memcpy(huge.data() + 7, &count, 4);
  ExpectBad(huge, "more than the limit");
}

}  // namespace
}  // namespace p2p::store
