#include "peer/metrics.h"

#include <cerrno>
#include <chrono>
#include <cstring>

namespace p2p::peer {

Result<MetricsWriter> MetricsWriter::Open(const std::string& path, bool append) {
  MetricsWriter w;
  if (path.empty()) return w;
  std::FILE* f = std::fopen(path.c_str(), append ? "a" : "w");
  if (f == nullptr) {
    return IoError(
        "cannot open metrics file {}: {} (check that the directory exists and is writable)", path,
        std::strerror(errno));
  }
  w.file_.reset(f);
  w.path_ = path;
  return w;
}

Status MetricsWriter::Write(nlohmann::json record) {
  if (!file_) return Status::Ok();
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  record["time"] = std::chrono::duration<double>(now).count();
  const std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_.get()) != line.size() ||
      std::fflush(file_.get()) != 0) {
    return IoError("writing metrics to {}: {}", path_, std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace p2p::peer
