// Fuzz target: every gradient codec's Decode (sync/codecs/codec.h), which every peer applies to
// the GRADIENT and AGGREGATE payloads of all the others. The first input byte picks a codec
// configuration from kCodecSpecs (codec_specs.h) (every codec, with the parameters that change the
// payload's layout); the rest is the payload. The output span gets the count the payload declares
// (its first u32, if it is at most kMaxValues), as the receiver's span holds the model's parameter
// count.
//
// Checks: Decode never fails without saying why, and decoding the same bytes twice gives the
// same bits (peers must agree on what a payload means).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "sync/codecs/codec.h"
#include "tests/fuzz/codec_specs.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

namespace codecs = p2p::sync::codecs;
using p2p::fuzz::Expect;
using p2p::fuzz::Fail;

// Larger counts are skipped (not decoded): a span of 2^32 floats would only test the allocator.
constexpr uint32_t kMaxValues = 1 << 16;

const std::vector<std::unique_ptr<codecs::Codec>>& Codecs() {
  static const auto* all = [] {
    auto* v = new std::vector<std::unique_ptr<codecs::Codec>>;
    for (const char* spec : p2p::fuzz::kCodecSpecs) {
      auto config = codecs::ParseCodecSpec(spec);
      if (!config.ok()) Fail(std::string("bad spec in kCodecSpecs: ") + spec);
      auto codec = codecs::MakeCodec(*config);
      if (!codec.ok()) Fail(std::string("cannot make codec: ") + spec);
      v->push_back(std::move(*codec));
    }
    return v;
  }();
  return *all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 + 4) return 0;
  const auto& all = Codecs();
  const codecs::Codec& codec = *all[data[0] % all.size()];
  const auto payload = std::as_bytes(std::span(data + 1, size - 1));
  uint32_t count;
  std::memcpy(&count, data + 1, 4);  // little-endian hosts only, like the codecs
  if (count > kMaxValues) return 0;
  std::vector<float> out(count), again(count);
  p2p::Status s = codec.Decode(payload, out);
  if (!s.ok()) {
    Expect(!s.message().empty(), "a rejection without a message");
    return 0;
  }
  Expect(codec.Decode(payload, again).ok(), "the same payload decodes once, fails the next time");
  Expect(count == 0 || std::memcmp(out.data(), again.data(), count * sizeof(float)) == 0,
         "the same payload decodes to different bits");
  return 0;
}
