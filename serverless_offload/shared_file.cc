#include "serverless_offload/shared_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace p2p::offload {

namespace {
Result<std::byte*> Map(int fd, const std::string& path, size_t size) {
  void* m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) return IoError("cannot map {}: {}", path, std::strerror(errno));
  return static_cast<std::byte*>(m);
}
}  // namespace

Result<SharedFile> SharedFile::Create(std::string_view name, size_t bytes) {
  if (bytes == 0) return InvalidArgument("shared file {} of 0 bytes", name);
  const std::string label(name);
  const int fd = ::memfd_create(label.c_str(), MFD_CLOEXEC);
  if (fd < 0) {
    return IoError("cannot create shared memory {}: {}", label, std::strerror(errno));
  }
  struct stat st {};
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0 || ::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return IoError("cannot size shared memory {} to {} bytes: {}", label, bytes,
                   std::strerror(err));
  }
  const std::string path = fmt::format("/proc/{}/fd/{}", ::getpid(), fd);
  auto data = Map(fd, path, bytes);
  if (!data.ok()) {
    ::close(fd);
    return data.status();
  }
  return SharedFile(path, *data, bytes, fd, st.st_ino);
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
  auto data = Map(fd, path, size);
  ::close(fd);  // the mapping keeps the file
  if (!data.ok()) return data.status();
  return SharedFile(path, *data, size, /*fd=*/-1, st.st_ino);
}

SharedFile::SharedFile(SharedFile&& o) noexcept
    : path_(std::move(o.path_)),
      data_(std::exchange(o.data_, nullptr)),
      size_(o.size_),
      fd_(std::exchange(o.fd_, -1)),
      inode_(o.inode_) {}

SharedFile& SharedFile::operator=(SharedFile&& o) noexcept {
  if (this != &o) {
    Release();
    path_ = std::move(o.path_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = o.size_;
    fd_ = std::exchange(o.fd_, -1);
    inode_ = o.inode_;
  }
  return *this;
}

SharedFile::~SharedFile() { Release(); }

void SharedFile::Release() {
  if (data_ != nullptr) ::munmap(data_, size_);
  if (fd_ >= 0) ::close(fd_);
  data_ = nullptr;
  fd_ = -1;
}

Result<std::span<float>> SharedFile::Floats(uint64_t offset, uint64_t count) const {
  if (offset % alignof(float) != 0 || offset > size_ || count > (size_ - offset) / sizeof(float)) {
    return DataLoss("{} floats at byte {} do not fit {} ({} bytes)", count, offset, path_, size_);
  }
  return std::span<float>(reinterpret_cast<float*>(data_ + offset), count);
}

ino_t InodeOf(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

}  // namespace p2p::offload
