#include "serverless_offload/param_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace p2p::offload {
namespace {

std::string VersionPath(const std::string& dir, uint64_t v) {
  return fmt::format("{}/params-{}.f32", dir, v);
}

}  // namespace

Result<ParamStore> ParamStore::Create() {
  P2P_ASSIGN_OR_RETURN(ShmDir dir, ShmDir::Create("p2ptrain-params"));
  return ParamStore(std::move(dir));
}

Result<ParamStore::Version> ParamStore::Publish(std::span<const float> params) {
  const uint64_t v = next_++;
  const std::string path = VersionPath(dir_.path(), v);
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return IoError("cannot create {}: {}", tmp, std::strerror(errno));
  const char* p = reinterpret_cast<const char*>(params.data());
  size_t left = params.size_bytes();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      return IoError("writing {}: {}", tmp, std::strerror(err));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  ::close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return IoError("renaming {}: {}", tmp, std::strerror(errno));
  }
  if (v > 2) ::unlink(VersionPath(dir_.path(), v - 2).c_str());
  return Version{path, v};
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
  return MappedParams(static_cast<const float*>(m), count);
}

MappedParams::MappedParams(MappedParams&& o) noexcept : data_(o.data_), count_(o.count_) {
  o.data_ = nullptr;
}

MappedParams& MappedParams::operator=(MappedParams&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) ::munmap(const_cast<float*>(data_), count_ * sizeof(float));
    data_ = o.data_;
    count_ = o.count_;
    o.data_ = nullptr;
  }
  return *this;
}

MappedParams::~MappedParams() {
  if (data_ != nullptr) ::munmap(const_cast<float*>(data_), count_ * sizeof(float));
}

}  // namespace p2p::offload
