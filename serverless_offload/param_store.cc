#include "serverless_offload/param_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace p2p::offload {
Result<ParamStore> ParamStore::Create() { return ParamStore(); }

Result<ParamStore::Version> ParamStore::Publish(std::span<const float> params) {
  const uint64_t v = next_++;
  std::optional<SharedFile>& file = files_[v % 2];
  if (!file || file->bytes().size() != params.size_bytes()) {
    file.reset();
    // A resized file is a new file with a new inode: functions still mapping the old one keep
    // their mapping, and see the change (function_main.cc compares inodes).
    P2P_ASSIGN_OR_RETURN(
        auto created,
        SharedFile::Create(fmt::format("p2ptrain-params-{}", ++generation_), params.size_bytes()));
    file.emplace(std::move(created));
  }
  std::memcpy(file->bytes().data(), params.data(), params.size_bytes());
  return Version{file->path(), v};
}

Result<MappedParams> MappedParams::Open(const std::string& path, uint64_t count) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError("cannot open parameters {}: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != count * sizeof(float)) {
    ::close(fd);
    return DataLoss("parameters {} hold {} bytes, expected {} floats", path, st.st_size, count);
  }
  void* m = ::mmap(nullptr, count * sizeof(float), PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) return IoError("cannot map {}: {}", path, std::strerror(errno));
  return MappedParams(static_cast<const float*>(m), count, st.st_ino);
}

MappedParams::MappedParams(MappedParams&& o) noexcept
    : data_(o.data_), count_(o.count_), inode_(o.inode_) {
  o.data_ = nullptr;
}

MappedParams& MappedParams::operator=(MappedParams&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) ::munmap(const_cast<float*>(data_), count_ * sizeof(float));
    data_ = o.data_;
    count_ = o.count_;
    inode_ = o.inode_;
    o.data_ = nullptr;
  }
  return *this;
}

MappedParams::~MappedParams() {
  if (data_ != nullptr) ::munmap(const_cast<float*>(data_), count_ * sizeof(float));
}

}  // namespace p2p::offload
