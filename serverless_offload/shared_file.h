// Shared memory between a pool and its same-host function processes: a private directory on
// /dev/shm (a temp directory elsewhere) and read-write mappings of files in it. The process
// backend puts each task's samples and its result slot there, so a batch and a gradient cross
// from one process to the other without going through a pipe (docs/offload.md).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace p2p::offload {

// A fresh private directory (mode 0700), removed with its files by the destructor.
class ShmDir {
 public:
  static Result<ShmDir> Create(std::string_view prefix);  // e.g. "p2ptrain-params"
  ShmDir(ShmDir&& other) noexcept;
  ShmDir& operator=(ShmDir&&) = delete;
  ~ShmDir();
  const std::string& path() const { return path_; }

 private:
  explicit ShmDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// A read-write MAP_SHARED mapping of a whole file.
class SharedFile {
 public:
  // Creates (or truncates) `path` with `bytes` zero bytes and maps it; the file is removed when
  // this object is destroyed (processes that mapped it keep their mapping).
  static Result<SharedFile> Create(const std::string& path, size_t bytes);
  // Maps an existing file. IoError naming it if it cannot be opened or mapped.
  static Result<SharedFile> Open(const std::string& path);
  SharedFile(SharedFile&& other) noexcept;
  SharedFile& operator=(SharedFile&& other) noexcept;
  ~SharedFile();

  std::span<std::byte> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }
  // `count` floats at byte `offset`, or DataLoss if that is outside the file or misaligned.
  Result<std::span<float>> Floats(uint64_t offset, uint64_t count) const;

 private:
  SharedFile(std::string path, std::byte* data, size_t size, bool owner)
      : path_(std::move(path)), data_(data), size_(size), owner_(owner) {}
  void Release();
  std::string path_;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
  bool owner_ = false;  // created it: unlink on destruction
};

}  // namespace p2p::offload
