// Machine-readable metrics: one JSON object per line (JSON lines), flushed per record so a run
// that dies keeps everything written so far.
#pragma once

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"

namespace p2p::peer {

class MetricsWriter {
 public:
  // An empty path makes a writer that discards records.
  static Result<MetricsWriter> Open(const std::string& path, bool append);
  MetricsWriter() = default;
  // Adds "time" (Unix seconds) and writes the record as one line.
  Status Write(nlohmann::json record);
  bool enabled() const { return file_ != nullptr; }

 private:
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, Closer> file_;
  std::string path_;
};

}  // namespace p2p::peer
