// Parameter snapshots shared with same-host function processes: one read-only file per parameter
// version in a private directory (on /dev/shm when available, so it never touches a disk). A
// function maps the file instead of receiving the parameters through its pipe.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "common/status.h"
#include "serverless_offload/shared_file.h"

namespace p2p::offload {

class ParamStore {
 public:
  // Creates a fresh private directory; removed (with its files) by the destructor.
  static Result<ParamStore> Create();
  ParamStore(ParamStore&& other) noexcept = default;
  ParamStore& operator=(ParamStore&&) = delete;

  struct Version {
    std::string path;
    uint64_t version = 0;
  };
  // Writes `params` as the next version (atomically: temp file + rename) and removes the version
  // before the previous one (functions still reading the previous one keep working).
  Result<Version> Publish(std::span<const float> params);
  const std::string& dir() const { return dir_.path(); }

 private:
  explicit ParamStore(ShmDir dir) : dir_(std::move(dir)) {}
  ShmDir dir_;
  uint64_t next_ = 1;
};

// A read-only mapping of a published version, held by a function while it computes.
class MappedParams {
 public:
  // IoError naming the file if it cannot be opened or mapped; DataLoss if its size is not
  // `count` floats.
  static Result<MappedParams> Open(const std::string& path, uint64_t count);
  MappedParams(MappedParams&& other) noexcept;
  MappedParams& operator=(MappedParams&& other) noexcept;
  ~MappedParams();
  std::span<const float> floats() const { return {data_, count_}; }

 private:
  MappedParams(const float* data, size_t count) : data_(data), count_(count) {}
  const float* data_ = nullptr;
  size_t count_ = 0;
};

}  // namespace p2p::offload
