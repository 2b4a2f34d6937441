#include "broker/rendezvous_log.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace p2p::broker::rendezvous {
namespace {

constexpr size_t kSummaryEntries = 10;  // (source, reason) pairs named in one summary line

}  // namespace

ServiceLog::ServiceLog(Sink sink, std::chrono::seconds interval, size_t max_keys,
                       int event_lines_per_interval)
    : sink_(std::move(sink)),
      interval_(interval),
      max_keys_(max_keys),
      event_budget_(event_lines_per_interval),
      events_left_(event_lines_per_interval),
      last_summary_(Clock::now()) {}

void ServiceLog::Refused(const std::string& source, const std::string& reason,
                         const std::string& message) {
  auto key = std::make_pair(source, reason);
  auto it = counts_.find(key);
  if (it != counts_.end()) {
    ++it->second;
    return;
  }
  if (counts_.size() >= max_keys_) {
    ++other_count_;
    return;
  }
  counts_.emplace(std::move(key), 0);  // logged now; only later ones are counted
  if (sink_) {
    sink_(
        fmt::format("rendezvous: refused a request from {} ({}): {} [further '{}' refusals "
                    "from {} are counted in the next summary]",
                    source, reason, message, reason, source));
  }
}

void ServiceLog::Event(const std::string& text) {
  if (events_left_ <= 0) {
    ++events_unlogged_;
    return;
  }
  --events_left_;
  if (sink_) sink_("rendezvous: " + text);
}

void ServiceLog::Tick(Clock::time_point now, const std::string& state) {
  if (now - last_summary_ < interval_) return;
  last_summary_ = now;
  events_left_ = event_budget_;
  uint64_t repeated = other_count_;
  std::vector<std::pair<uint64_t, std::string>> named;
  for (const auto& [key, count] : counts_) {
    if (count > 0) named.emplace_back(count, fmt::format("{} {}", key.first, key.second));
    repeated += count;
  }
  if (repeated > 0 || events_unlogged_ > 0) {
    std::sort(named.rbegin(), named.rend());
    std::string top;
    for (size_t i = 0; i < std::min(named.size(), kSummaryEntries); ++i) {
      top += fmt::format("{}{} x{}", i == 0 ? "" : ", ", named[i].second, named[i].first);
    }
    if (named.size() > kSummaryEntries) {
      top += fmt::format(", and {} more (address, reason) pairs", named.size() - kSummaryEntries);
    }
    if (other_count_ > 0) top += fmt::format(", other addresses x{}", other_count_);
    if (sink_) {
      sink_(
          fmt::format("rendezvous: in the last {} s: {} further refusals{}{}; {} events not "
                      "logged; now {}",
                      interval_.count(), repeated, top.empty() ? "" : " (",
                      top.empty() ? "" : top + ")", events_unlogged_, state));
    }
  }
  // A pair quiet for a whole interval is logged in full again when it comes back.
  std::erase_if(counts_, [](const auto& kv) { return kv.second == 0; });
  for (auto& kv : counts_) kv.second = 0;
  other_count_ = 0;
  events_unlogged_ = 0;
}

}  // namespace p2p::broker::rendezvous
