// Parameter snapshots shared with same-host function processes: two anonymous shared-memory files
// (shared_file.h: no name on /dev/shm, nothing left behind by a killed run) that versions take
// turns in. A
// function maps a file once and reads each new version from the same mapping: per step the
// parameters cost one memcpy on each side, no file creation, mapping or page faults.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "common/status.h"
#include "serverless_offload/shared_file.h"

namespace p2p::offload {

class ParamStore {
 public:
  // An empty store; its files are created by the first Publish and freed by the destructor.
  static Result<ParamStore> Create();
  ParamStore(ParamStore&& other) noexcept = default;
  ParamStore& operator=(ParamStore&&) = delete;

  struct Version {
    std::string path;
    uint64_t version = 0;
  };
  // Writes `params` as the next version into the file the version before the previous one used.
  // The previous version stays intact, so this is safe while functions still compute on it; no
  // function may still read the one before (FunctionPool::RunAll returns only after all its
  // functions finished or were killed).
  Result<Version> Publish(std::span<const float> params);

 private:
  ParamStore() = default;
  std::optional<SharedFile> files_[2];  // version v lives in files_[v % 2]
  uint64_t next_ = 1;
  uint64_t generation_ = 0;  // numbers the files' names in /proc listings
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
  // The mapped file's inode (see SharedFile::inode).
  ino_t inode() const { return inode_; }

 private:
  MappedParams(const float* data, size_t count, ino_t inode)
      : data_(data), count_(count), inode_(inode) {}
  const float* data_ = nullptr;
  size_t count_ = 0;
  ino_t inode_ = 0;
};

}  // namespace p2p::offload
