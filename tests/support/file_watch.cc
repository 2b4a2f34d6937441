#include "tests/support/file_watch.h"

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>

#include "tests/support/subprocess.h"

namespace p2p::test {

bool WaitForFile(const std::string& path, const std::function<bool()>& ready,
                 std::chrono::milliseconds timeout) {
  const int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) throw std::runtime_error("inotify_init1 failed");
  const std::string dir = std::filesystem::path(path).parent_path().string();
  if (inotify_add_watch(fd, dir.c_str(), IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO) <
      0) {
    ::close(fd);
    throw std::runtime_error("inotify_add_watch failed on " + dir);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool ok = ready();  // after the watch exists, so no change between check and wait is missed
  while (!ok) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[4096];
    while (::read(fd, buf, sizeof(buf)) > 0) {
    }
    ok = ready();
  }
  ::close(fd);
  return ok;
}

bool WaitForLines(const std::string& path, size_t lines, std::chrono::milliseconds timeout) {
  return WaitForFile(
      path,
      [&] {
        const std::string text = ReadFile(path);
        size_t complete = 0;
        for (char c : text) complete += c == '\n';
        return complete >= lines;
      },
      timeout);
}

}  // namespace p2p::test
