// Progress of a long run: a redrawn bar on a terminal, a plain line every `interval` otherwise
// (so logs of batch jobs stay readable). Writes to stderr; stdout stays for results.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace p2p::peer {

class Progress {
 public:
  enum class Mode { kAuto, kBar, kLines, kOff };
  static Mode ParseMode(const std::string& s);  // auto|bar|lines|off; anything else is kAuto

  Progress(Mode mode, std::chrono::seconds interval = std::chrono::seconds(10));
  // Starts a phase of `total` steps, e.g. one epoch's batches.
  void Begin(std::string label, int64_t total);
  // Reports `done` of total steps with a free-form status such as "loss 0.41".
  void Update(int64_t done, const std::string& status);
  // Ends the phase with a summary line (always printed unless kOff).
  void End(const std::string& summary);

 private:
  void DrawBar(int64_t done, const std::string& status);
  Mode mode_;
  std::chrono::seconds interval_;
  std::string label_;
  int64_t total_ = 0;
  std::chrono::steady_clock::time_point begin_, last_;
};

}  // namespace p2p::peer
