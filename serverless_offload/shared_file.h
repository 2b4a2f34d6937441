// Shared memory between a pool and its same-host function processes: anonymous memory files
// (memfd_create) mapped read-write. The process backend puts each task's samples and its result
// slot there, and the parameter snapshots (param_store.h), so a batch and a gradient cross from
// one process to the other without going through a pipe (docs/offload.md).
//
// The files have no name on /dev/shm or anywhere else: the kernel frees them when the last
// descriptor and mapping are gone, so a run killed by any signal, SIGKILL included, leaves
// nothing behind. A function opens one through its creator's descriptor,
// /proc/<creator pid>/fd/<fd> (as the same user; a fresh open, so its own mapping outlives the
// creator's descriptor).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace p2p::offload {

// A read-write MAP_SHARED mapping of a whole file.
class SharedFile {
 public:
  // Creates an anonymous file of `bytes` zero bytes named `name` (only for /proc listings) and
  // maps it; path() is where other processes of this user open it while this object lives.
  static Result<SharedFile> Create(std::string_view name, size_t bytes);
  // Maps an existing file (a path() of Create's, or any regular file). IoError naming it if it
  // cannot be opened or mapped.
  static Result<SharedFile> Open(const std::string& path);
  SharedFile(SharedFile&& other) noexcept;
  SharedFile& operator=(SharedFile&& other) noexcept;
  ~SharedFile();

  std::span<std::byte> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }
  // The file's identity: /proc paths are reused with descriptor numbers, inodes are not (while
  // the file exists), so a reader that keeps a mapping compares these before reusing it.
  ino_t inode() const { return inode_; }
  // `count` floats at byte `offset`, or DataLoss if that is outside the file or misaligned.
  Result<std::span<float>> Floats(uint64_t offset, uint64_t count) const;

 private:
  SharedFile(std::string path, std::byte* data, size_t size, int fd, ino_t inode)
      : path_(std::move(path)), data_(data), size_(size), fd_(fd), inode_(inode) {}
  void Release();
  std::string path_;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
  int fd_ = -1;  // created here: kept open, it is what path() names
  ino_t inode_ = 0;
};

// The inode `path` names now (following /proc/<pid>/fd links), or 0 if it cannot be looked up.
ino_t InodeOf(const std::string& path);

}  // namespace p2p::offload
