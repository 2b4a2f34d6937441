#include "serverless_offload/shared_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

namespace p2p::offload {

Result<ShmDir> ShmDir::Create(std::string_view prefix) {
  const bool shm = ::access("/dev/shm", W_OK) == 0;
  std::string tmpl = fmt::format(
      "{}/{}-XXXXXX",
      shm ? std::string("/dev/shm") : std::filesystem::temp_directory_path().string(), prefix);
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return IoError("cannot create a shared-memory directory {}: {}", tmpl, std::strerror(errno));
  }
  return ShmDir(tmpl);
}

ShmDir::ShmDir(ShmDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}

ShmDir::~ShmDir() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

namespace {
Result<std::byte*> MapFd(int fd, const std::string& path, size_t size) {
  void* m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) return IoError("cannot map {}: {}", path, std::strerror(errno));
  return static_cast<std::byte*>(m);
}
}  // namespace

Result<SharedFile> SharedFile::Create(const std::string& path, size_t bytes) {
  if (bytes == 0) return InvalidArgument("shared file {} of 0 bytes", path);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return IoError("cannot create {}: {}", path, std::strerror(errno));
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    const int err = errno;
    ::close(fd);
    return IoError("cannot size {} to {} bytes: {}", path, bytes, std::strerror(err));
  }
  P2P_ASSIGN_OR_RETURN(std::byte * data, MapFd(fd, path, bytes));
  return SharedFile(path, data, bytes, /*owner=*/true);
}

Result<SharedFile> SharedFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return IoError("cannot open {}: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size <= 0) {
    ::close(fd);
    return IoError("cannot use {}: empty or unreadable", path);
  }
  const auto size = static_cast<size_t>(st.st_size);
  P2P_ASSIGN_OR_RETURN(std::byte * data, MapFd(fd, path, size));
  return SharedFile(path, data, size, /*owner=*/false);
}

SharedFile::SharedFile(SharedFile&& o) noexcept
    : path_(std::move(o.path_)),
      data_(std::exchange(o.data_, nullptr)),
      size_(o.size_),
      owner_(std::exchange(o.owner_, false)) {}

SharedFile& SharedFile::operator=(SharedFile&& o) noexcept {
  if (this != &o) {
    Release();
    path_ = std::move(o.path_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = o.size_;
    owner_ = std::exchange(o.owner_, false);
  }
  return *this;
}

SharedFile::~SharedFile() { Release(); }

void SharedFile::Release() {
  if (data_ != nullptr) ::munmap(data_, size_);
  if (owner_) ::unlink(path_.c_str());
  data_ = nullptr;
  owner_ = false;
}

Result<std::span<float>> SharedFile::Floats(uint64_t offset, uint64_t count) const {
  if (offset % alignof(float) != 0 || offset > size_ || count > (size_ - offset) / sizeof(float)) {
    return DataLoss("{} floats at byte {} do not fit {} ({} bytes)", count, offset, path_, size_);
  }
  return std::span<float>(reinterpret_cast<float*>(data_ + offset), count);
}

}  // namespace p2p::offload
