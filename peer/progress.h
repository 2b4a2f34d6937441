// Progress of a long run: a redrawn bar on a terminal, a plain line every `interval` otherwise
// (so logs of batch jobs stay readable), or JSON events for a supervising `p2ptrain launch`.
// The bar and lines modes write to stderr; stdout stays for results. The json mode writes its
// events to stdout (one object per line, flushed), where the launcher reads them.
//
// The json events (read back by ParseProgressEvent):
//   {"event":"progress","label":"epoch 1/3","done":45,"total":211,"status":"loss 0.41"}
//   {"event":"progress_end","label":"epoch 1/3","summary":"loss 0.39 val_loss 0.41 ..."}
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace p2p::peer {

class Progress {
 public:
  enum class Mode { kAuto, kBar, kLines, kOff, kJson };
  // The names --progress accepts: auto, bar, lines, off, json.
  static const std::vector<std::string>& ModeNames();
  // A mode by name; anything else is InvalidArgument listing the names.
  static Result<Mode> ParseModeName(std::string_view s);
  // For a name already validated (the --progress flag checks it against ModeNames()); an unknown
  // name is a broken invariant (P2P_CHECK), never silently kAuto.
  static Mode ParseMode(const std::string& s);

  Progress(Mode mode, std::chrono::seconds interval = std::chrono::seconds(10));
  // Starts a phase of `total` steps, e.g. one epoch's batches.
  void Begin(std::string label, int64_t total);
  // Reports `done` of total steps with a free-form status such as "loss 0.41".
  void Update(int64_t done, const std::string& status);
  // Ends the phase with a summary line (always printed unless kOff).
  void End(const std::string& summary);

 private:
  void DrawBar(int64_t done, const std::string& status);
  void WriteJsonEvent(int64_t done, const std::string& status);
  Mode mode_;
  std::chrono::seconds interval_;
  std::string label_;
  int64_t total_ = 0;
  std::chrono::steady_clock::time_point begin_, last_;
};

// One json-mode event as read back from a peer's stdout.
struct ProgressEvent {
  bool end = false;  // a progress_end event: `status` holds its summary
  std::string label;
  int64_t done = 0, total = 0;
  std::string status;
};

// The event on one output line, or nullopt for an ordinary line (anything that is not a JSON object
// with "event" "progress"/"progress_end" and the fields above).
std::optional<ProgressEvent> ParseProgressEvent(std::string_view line);

// The one line a launcher shows for a group of ranks, from each rank's latest event (nullopt:
// nothing yet), e.g. "epoch 1/3  r0 45% r1 44% r2 -  loss 0.53". The label is the first rank's;
// a rank in another phase shows its own label. Statuses of the form "key number ..." with the
// same keys on every rank are averaged; otherwise the first rank's status is shown. Beyond 16
// ranks the per-rank list becomes "64 ranks 41%..47%".
std::string CombineProgress(std::span<const std::optional<ProgressEvent>> latest);

}  // namespace p2p::peer
