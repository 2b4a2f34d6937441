// Blocks until a file satisfies a condition, woken by inotify on its directory (no sleeps, no
// polling loops): e.g. "rank 1 has written its first epoch's metrics" before a test kills it.
#pragma once

#include <chrono>
#include <functional>
#include <string>

namespace p2p::test {

// Returns true as soon as `ready()` holds (checked now and after every change in the directory
// of `path`), false if `timeout` passes first.
bool WaitForFile(const std::string& path, const std::function<bool()>& ready,
                 std::chrono::milliseconds timeout);

// WaitForFile until the JSON-lines file `path` has at least `lines` complete lines.
bool WaitForLines(const std::string& path, size_t lines, std::chrono::milliseconds timeout);

}  // namespace p2p::test
