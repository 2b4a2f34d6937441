#include "peer/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace p2p::peer {
namespace {
using Clock = std::chrono::steady_clock;
double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}
}  // namespace

Progress::Mode Progress::ParseMode(const std::string& s) {
  if (s == "bar") return Mode::kBar;
  if (s == "lines") return Mode::kLines;
  if (s == "off") return Mode::kOff;
  return Mode::kAuto;
}

Progress::Progress(Mode mode, std::chrono::seconds interval) : mode_(mode), interval_(interval) {
  if (mode_ == Mode::kAuto) mode_ = isatty(STDERR_FILENO) ? Mode::kBar : Mode::kLines;
}

void Progress::Begin(std::string label, int64_t total) {
  label_ = std::move(label);
  total_ = total;
  begin_ = last_ = Clock::now();
}

void Progress::Update(int64_t done, const std::string& status) {
  if (mode_ == Mode::kOff) return;
  const auto now = Clock::now();
  if (mode_ == Mode::kBar) {
    // Redrawing more than ~10 times a second costs time and shows nothing new.
    if (now - last_ < std::chrono::milliseconds(100) && done < total_) return;
    last_ = now;
    DrawBar(done, status);
    return;
  }
  if (now - last_ < interval_) return;
  last_ = now;
  fmt::print(stderr, "{} {}/{} ({:.0f}%) {} {:.1f}s\n", label_, done, total_,
             total_ > 0 ? 100.0 * done / total_ : 0.0, status, SecondsSince(begin_));
  std::fflush(stderr);
}

void Progress::DrawBar(int64_t done, const std::string& status) {
  constexpr int kWidth = 30;
  const int filled = total_ > 0 ? static_cast<int>(kWidth * done / total_) : 0;
  const double elapsed = SecondsSince(begin_);
  const double eta = done > 0 ? elapsed * (total_ - done) / done : 0.0;
  fmt::print(stderr, "\r{} [{}{}] {}/{} {} eta {:.0f}s\x1b[K", label_, std::string(filled, '#'),
             std::string(kWidth - filled, '.'), done, total_, status, eta);
  std::fflush(stderr);
}

void Progress::End(const std::string& summary) {
  if (mode_ == Mode::kOff) return;
  if (mode_ == Mode::kBar) fmt::print(stderr, "\r\x1b[K");
  fmt::print(stderr, "{} {}\n", label_, summary);
  std::fflush(stderr);
}

}  // namespace p2p::peer
