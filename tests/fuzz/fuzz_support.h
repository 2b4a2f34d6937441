// Helpers shared by the fuzz targets (tests/fuzz, docs/fuzzing.md).
//
// Stateful decoders (the chunk reassemblers) take a sequence of frames, so their targets read the
// fuzzer's input as records:  u8 sender | u16 length (little-endian) | length bytes
// and stop at the first incomplete record. The seed generator writes its frames the same way
// (AppendRecord), so a mutation of one byte changes one frame and the rest stay intact.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>
#include <vector>

namespace p2p::fuzz {

struct Record {
  uint8_t sender = 0;
  std::span<const std::byte> bytes;
};

inline std::vector<Record> SplitRecords(const uint8_t* data, size_t size) {
  std::vector<Record> records;
  size_t pos = 0;
  while (size - pos >= 3) {
    const size_t len = data[pos + 1] | (size_t{data[pos + 2]} << 8);
    if (size - pos - 3 < len) break;
    records.push_back({data[pos], std::as_bytes(std::span(data + pos + 3, len))});
    pos += 3 + len;
  }
  return records;
}

inline void AppendRecord(std::vector<std::byte>& out, uint8_t sender,
                         std::span<const std::byte> bytes) {
  if (bytes.size() > 0xffff) std::abort();  // seeds are built small on purpose
  out.push_back(std::byte{sender});
  out.push_back(std::byte(bytes.size() & 0xff));
  out.push_back(std::byte(bytes.size() >> 8));
  out.insert(out.end(), bytes.begin(), bytes.end());
}

// A broken property of the decoder under test (not a sanitizer finding): says which, then aborts
// so that libFuzzer keeps the input as a crash.
[[noreturn]] inline void Fail(std::string_view what) {
  std::fprintf(stderr, "fuzz property violated: %.*s\n", static_cast<int>(what.size()),
               what.data());
  std::abort();
}

inline void Expect(bool ok, std::string_view what) {
  if (!ok) Fail(what);
}

}  // namespace p2p::fuzz
