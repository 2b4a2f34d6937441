#include "peer/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

namespace p2p::peer {
namespace {
using Clock = std::chrono::steady_clock;
// json mode: at most ~2 events a second (plus the last of each phase), so a launcher of 64 peers
// reads ~128 small lines a second at most.
constexpr auto kJsonInterval = std::chrono::milliseconds(500);
// Beyond this many ranks the combined line shows a range instead of one entry per rank.
constexpr size_t kMaxListedRanks = 16;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// "loss 0.41 acc 0.9" -> {"loss", "acc"} and {0.41, 0.9}; false unless it is all key-number pairs.
bool SplitKeyValues(const std::string& status, std::vector<std::string>& keys,
                    std::vector<double>& values) {
  std::istringstream in(status);
  std::string key, value;
  while (in >> key) {
    if (!(in >> value)) return false;
    size_t used = 0;
    try {
      values.push_back(std::stod(value, &used));
    } catch (const std::exception&) {
      return false;
    }
    if (used != value.size()) return false;
    keys.push_back(key);
  }
  return !keys.empty();
}

// The mean of (non-empty) statuses if they all have the same keys, else the first one.
std::string MeanStatus(const std::vector<const ProgressEvent*>& events) {
  std::vector<std::string> keys;
  std::vector<double> sums;
  for (const ProgressEvent* e : events) {
    std::vector<std::string> k;
    std::vector<double> v;
    if (!SplitKeyValues(e->status, k, v) || (!keys.empty() && k != keys)) {
      return events.front()->status;
    }
    if (keys.empty()) sums.assign(v.size(), 0.0);
    keys = std::move(k);
    for (size_t i = 0; i < v.size(); ++i) sums[i] += v[i];
  }
  std::string out;
  for (size_t i = 0; i < keys.size(); ++i) {
    out += fmt::format("{}{} {:.4g}", i ? " " : "", keys[i], sums[i] / double(events.size()));
  }
  return out;
}

int Percent(const ProgressEvent& e) {
  if (e.end) return 100;
  return e.total > 0 ? static_cast<int>(100 * std::clamp<int64_t>(e.done, 0, e.total) / e.total)
                     : 0;
}

// "r0 45% r1 [epoch 2/3] 3% r2 -", or "64 ranks 41%..47%" for many ranks.
std::string RankList(std::span<const std::optional<ProgressEvent>> latest,
                     const std::string& label) {
  if (latest.size() > kMaxListedRanks) {
    int lo = 100, hi = 0;
    size_t started = 0, other_phase = 0;
    for (const auto& e : latest) {
      if (!e) continue;
      ++started;
      if (e->label != label) ++other_phase;
      lo = std::min(lo, Percent(*e));
      hi = std::max(hi, Percent(*e));
    }
    std::string out = fmt::format("{} ranks {}%..{}%", latest.size(), lo, hi);
    if (started < latest.size()) out += fmt::format(", {} not started", latest.size() - started);
    if (other_phase > 0) out += fmt::format(", {} in another phase", other_phase);
    return out;
  }
  std::string out;
  for (size_t r = 0; r < latest.size(); ++r) {
    out += fmt::format("{}r{} ", r ? " " : "", r);
    const auto& e = latest[r];
    if (!e) {
      out += "-";
    } else {
      if (e->label != label) out += fmt::format("[{}] ", e->label);
      out += fmt::format("{}%", Percent(*e));
    }
  }
  return out;
}

}  // namespace

const std::vector<std::string>& Progress::ModeNames() {
  static const std::vector<std::string> kNames = {"auto", "bar", "lines", "off", "json"};
  return kNames;
}

Result<Progress::Mode> Progress::ParseModeName(std::string_view s) {
  if (s == "auto") return Mode::kAuto;
  if (s == "bar") return Mode::kBar;
  if (s == "lines") return Mode::kLines;
  if (s == "off") return Mode::kOff;
  if (s == "json") return Mode::kJson;
  return InvalidArgument("unknown progress mode '{}' (expected one of: {})", s,
                         fmt::join(ModeNames(), ", "));
}

Progress::Mode Progress::ParseMode(const std::string& s) {
  Result<Mode> mode = ParseModeName(s);
  P2P_CHECK(mode.ok(), "{}", mode.status().message());
  return *mode;
}

Progress::Progress(Mode mode, std::chrono::seconds interval) : mode_(mode), interval_(interval) {
  if (mode_ == Mode::kAuto) mode_ = isatty(STDERR_FILENO) ? Mode::kBar : Mode::kLines;
}

void Progress::Begin(std::string label, int64_t total) {
  label_ = std::move(label);
  total_ = total;
  begin_ = last_ = Clock::now();
  // A launcher learns the new phase at once, not after the first throttled update.
  if (mode_ == Mode::kJson) WriteJsonEvent(0, "");
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
  if (mode_ == Mode::kJson) {
    if (now - last_ < kJsonInterval && done < total_) return;
    last_ = now;
    WriteJsonEvent(done, status);
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

void Progress::WriteJsonEvent(int64_t done, const std::string& status) {
  const nlohmann::json event = {{"event", "progress"},
                                {"label", label_},
                                {"done", done},
                                {"total", total_},
                                {"status", status}};
  fmt::print(stdout, "{}\n", event.dump());
  std::fflush(stdout);
}

void Progress::End(const std::string& summary) {
  if (mode_ == Mode::kOff) return;
  if (mode_ == Mode::kJson) {
    const nlohmann::json event = {
        {"event", "progress_end"}, {"label", label_}, {"summary", summary}};
    fmt::print(stdout, "{}\n", event.dump());
    std::fflush(stdout);
    return;
  }
  if (mode_ == Mode::kBar) fmt::print(stderr, "\r\x1b[K");
  fmt::print(stderr, "{} {}\n", label_, summary);
  std::fflush(stderr);
}

std::optional<ProgressEvent> ParseProgressEvent(std::string_view line) {
  // Cheap filter first: ordinary output lines are never parsed as JSON.
  if (line.empty() || line.front() != '{' || line.find("\"event\"") == std::string_view::npos) {
    return std::nullopt;
  }
  const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("event") || !j["event"].is_string() || !j.contains("label") ||
      !j["label"].is_string()) {
    return std::nullopt;
  }
  ProgressEvent e;
  e.label = j["label"].get<std::string>();
  const std::string kind = j["event"].get<std::string>();
  if (kind == "progress_end") {
    e.end = true;
    if (j.contains("summary") && j["summary"].is_string()) e.status = j["summary"];
    return e;
  }
  if (kind != "progress" || !j.contains("done") || !j["done"].is_number_integer() ||
      !j.contains("total") || !j["total"].is_number_integer()) {
    return std::nullopt;
  }
  e.done = j["done"].get<int64_t>();
  e.total = j["total"].get<int64_t>();
  if (j.contains("status") && j["status"].is_string()) e.status = j["status"];
  return e;
}

std::string CombineProgress(std::span<const std::optional<ProgressEvent>> latest) {
  std::string label;
  for (const auto& e : latest) {
    if (e) {
      label = e->label;
      break;
    }
  }
  std::vector<const ProgressEvent*> same_phase;
  for (const auto& e : latest) {
    if (e && e->label == label && !e->end && !e->status.empty()) same_phase.push_back(&*e);
  }
  std::string out = fmt::format("{}  {}", label, RankList(latest, label));
  const std::string status = same_phase.empty() ? "" : MeanStatus(same_phase);
  if (!status.empty()) out += "  " + status;
  return out;
}

}  // namespace p2p::peer
