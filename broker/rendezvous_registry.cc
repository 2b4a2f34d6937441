#include "broker/rendezvous_registry.h"

#include <fmt/format.h>

#include <algorithm>

namespace p2p::broker::rendezvous {
namespace {

using Refusal = std::pair<std::string, std::string>;  // (reason, message)

// "3f2a9c01b7de": enough of a fingerprint to tell keys apart in a message.
std::string ShortKey(const Bytes& key_id) {
  std::string out;
  for (size_t i = 0; i < std::min<size_t>(6, key_id.size()); ++i) {
    out += fmt::format("{:02x}", static_cast<unsigned>(key_id[i]));
  }
  return out;
}

Bytes ErrorReply(const std::string& message) { return EncodeReply({false, message, {}}); }

}  // namespace

Registry::Registry(const Limits& limits, Verifier verifier)
    : limits_(limits), verifier_(std::move(verifier)) {}

Registry::Outcome Registry::Handle(const std::string& client, const std::string& source,
                                   const Result<Request>& request, const Now& now) {
  Outcome out;
  if (auto refused = Admit(source, now)) {
    Refuse(client, refused->first, refused->second, out);
    return out;
  }
  if (!request.ok()) {
    Refuse(client, "malformed", request.status().message(), out);
    return out;
  }
  if (auto refused = CheckSignature(*request, now)) {
    Refuse(client, refused->first, refused->second, out);
    return out;
  }
  Register(client, source, *request, now, out);
  return out;
}

// Rate limiting: a token bucket per source address. Sources holding nothing are forgotten once
// their bucket is full again (Expire), or all at once when the table is full.
std::optional<Refusal> Registry::Admit(const std::string& source, const Now& now) {
  auto it = sources_.find(source);
  if (it == sources_.end()) {
    if (sources_.size() >= limits_.max_sources) {
      std::erase_if(sources_, [](const auto& kv) { return kv.second.held == 0; });
    }
    if (sources_.size() >= limits_.max_sources) {
      return Refusal{
          "too_many_sources",
          fmt::format("rendezvous is busy ({} client addresses); retry later", sources_.size())};
    }
    it = sources_.emplace(source, Source{limits_.burst, now.steady, 0, {}}).first;
  }
  Source& s = it->second;
  const double elapsed = std::chrono::duration<double>(now.steady - s.refilled).count();
  s.tokens = std::min(limits_.burst, s.tokens + elapsed * limits_.requests_per_second);
  s.refilled = now.steady;
  if (s.tokens < 1.0) {
    return Refusal{"rate_limited",
                   fmt::format("too many requests from {} (limit {}/s); retry later", source,
                               limits_.requests_per_second)};
  }
  s.tokens -= 1.0;
  return std::nullopt;
}

// Cheap checks first: an attacker can name a trusted key, so the RSA verification comes last.
std::optional<Refusal> Registry::CheckSignature(const Request& r, const Now& now) const {
  if (!verifier_) return std::nullopt;
  if (!r.is_signed()) {
    return Refusal{"unsigned",
                   "this rendezvous accepts only registrations signed by a trusted key "
                   "(p2ptrain peer --key; the broker's --trust must hold its public key)"};
  }
  const int64_t skew = limits_.max_clock_skew.count() * 1000;
  const int64_t at = static_cast<int64_t>(r.unix_ms);
  if (at < now.unix_ms - skew || at > now.unix_ms + skew) {
    return Refusal{"stale_signature",
                   fmt::format("registration signed at {} ms, {} ms from the rendezvous's clock "
                               "(limit ±{} s): a replay, or the clocks disagree",
                               at, at - now.unix_ms, limits_.max_clock_skew.count())};
  }
  const std::string why = verifier_(r.key_id, SigningBytes(r), r.signature);
  if (why.empty()) return std::nullopt;
  return Refusal{
      why, why == "untrusted_key"
               ? fmt::format("key {} is not in the rendezvous's --trust store", ShortKey(r.key_id))
               : fmt::format("the signature by key {} does not verify", ShortKey(r.key_id))};
}

void Registry::Register(const std::string& client, const std::string& source, const Request& r,
                        const Now& now, Outcome& out) {
  auto it = runs_.find(r.run_id);
  if (it != runs_.end() && !Reuse(it, client, r, now, out)) return;
  it = runs_.find(r.run_id);  // Reuse may have erased a finished run
  if (it == runs_.end()) {
    if (!HasSourceRoom(client, source, out)) return;
    if (!MakeRoom(client, source, r.run_id, /*new_run=*/true, now, out)) return;
    it = runs_.emplace(r.run_id, Run{r.size, {}, now.steady, std::nullopt}).first;
  } else {
    if (!HasSourceRoom(client, source, out)) return;
    it->second.touched = now.steady;  // so that MakeRoom's expiry keeps it
    if (!MakeRoom(client, source, r.run_id, /*new_run=*/false, now, out)) return;
  }
  Insert(it->second, r.run_id, r.rank, Entry{r.endpoint, client, "", source, r.key_id, r.unix_ms});
  it->second.touched = now.steady;
  CompleteIfFull(it->second, r.run_id, now, out);
}

// The run exists. Returns true when `r` should go on to take a free rank (the rank was free, was
// given up by its holder, or the finished run was forgotten to start a new incarnation); false
// when `r` was answered here (a retry, or a refusal).
bool Registry::Reuse(RunMap::iterator it, const std::string& client, const Request& r,
                     const Now& now, Outcome& out) {
  Run& run = it->second;
  if (run.size != r.size) {
    if (run.completed) return StartAgain(it, out);
    Refuse(client, "size_mismatch",
           fmt::format("run '{}' has size {}, rank {} registered with size {}", r.run_id, run.size,
                       r.rank, r.size),
           out);
    return false;
  }
  auto held = run.entries.find(r.rank);
  if (held == run.entries.end()) return KeyIsFree(run, client, r, out);
  Entry& e = held->second;
  if (verifier_ && e.key_id != r.key_id) {
    Refuse(client, "rank_taken",
           fmt::format("rank {} of run '{}' is held by key {}; a registration signed by another "
                       "key cannot replace it",
                       r.rank, r.run_id, ShortKey(e.key_id)),
           out);
    return false;
  }
  if (e.endpoint == r.endpoint) {  // a retry: answer it too, keep the entry
    if (client != e.client) e.retry_client = client;
    e.unix_ms = std::max(e.unix_ms, r.unix_ms);
    run.touched = now.steady;
    if (run.completed) out.replies.emplace_back(client, EncodeReply({true, {}, EndpointList(run)}));
    return false;
  }
  if (!verifier_ && !run.completed) {
    Refuse(client, "rank_taken",
           fmt::format("rank {} of run '{}' is already registered at {}", r.rank, r.run_id,
                       e.endpoint),
           out);
    return false;
  }
  if (verifier_ && r.unix_ms <= e.unix_ms) {
    Refuse(client, "stale_signature",
           fmt::format("rank {} of run '{}' holds a newer registration by the same key", r.rank,
                       r.run_id),
           out);
    return false;
  }
  // A new endpoint for the rank: the holder restarted (signed by its key, and newer), or the run
  // already finished and is being started again.
  if (run.completed) return StartAgain(it, out);
  Notify(e,
         ErrorReply(fmt::format("rank {} of run '{}' was registered again by the same key "
                                "with a newer endpoint; this registration is void",
                                r.rank, r.run_id)),
         out.replies);
  Remove(run, r.run_id, r.rank);
  return true;
}

bool Registry::KeyIsFree(const Run& run, const std::string& client, const Request& r,
                         Outcome& out) {
  if (!verifier_) return true;
  for (const auto& [rank, e] : run.entries) {
    if (e.key_id == r.key_id) {
      Refuse(client, "key_in_use",
             fmt::format("key {} already holds rank {} of run '{}'", ShortKey(r.key_id), rank,
                         r.run_id),
             out);
      return false;
    }
  }
  return true;
}

bool Registry::StartAgain(RunMap::iterator it, Outcome& out) {
  Erase(it, "finished; a new incarnation registers", nullptr, out.notes);
  return true;
}

bool Registry::HasSourceRoom(const std::string& client, const std::string& source, Outcome& out) {
  const size_t held = sources_[source].held;
  if (held < limits_.max_per_source) return true;
  Refuse(client, "source_full",
         fmt::format("{} holds {} registrations already (limit {}); wait for its runs to "
                     "complete or expire",
                     source, held, limits_.max_per_source),
         out);
  return false;
}

// Makes room for one registration (and a run when `new_run`): expired runs first, then the
// oldest finished run, then the oldest incomplete run of the source holding the most
// registrations, if that source holds more than the requester. Refuses otherwise.
bool Registry::MakeRoom(const std::string& client, const std::string& source,
                        const std::string& keep, bool new_run, const Now& now, Outcome& out) {
  auto full = [&] {
    return registrations_ >= limits_.max_registrations ||
           (new_run && runs_.size() >= limits_.max_runs);
  };
  if (!full()) return true;
  for (std::string& note : Expire(now)) out.notes.push_back(std::move(note));
  while (full()) {
    auto oldest = runs_.end();
    for (auto it = runs_.begin(); it != runs_.end(); ++it) {
      if (it->second.completed && it->first != keep &&
          (oldest == runs_.end() || *it->second.completed < *oldest->second.completed)) {
        oldest = it;
      }
    }
    if (oldest != runs_.end()) {
      Erase(oldest, "evicted (finished; the rendezvous was full)", nullptr, out.notes);
      ++counters_.evicted;
    } else if (!EvictFromHeaviest(source, keep, out)) {
      break;
    }
  }
  if (!full()) return true;
  Refuse(client, "full",
         fmt::format("rendezvous is full ({} runs, {} registrations) and {} holds as many as "
                     "any other address; retry later",
                     runs_.size(), registrations_, source),
         out);
  return false;
}

bool Registry::EvictFromHeaviest(const std::string& source, const std::string& keep, Outcome& out) {
  const size_t mine = sources_[source].held;
  auto heaviest = sources_.end();
  for (auto it = sources_.begin(); it != sources_.end(); ++it) {
    if (heaviest == sources_.end() || it->second.held > heaviest->second.held) heaviest = it;
  }
  if (heaviest == sources_.end() || heaviest->second.held <= mine) return false;
  auto victim = runs_.end();
  for (const auto& [run_id, count] : heaviest->second.runs) {
    auto it = runs_.find(run_id);
    if (it == runs_.end() || run_id == keep || it->second.completed) continue;
    if (victim == runs_.end() || it->second.touched < victim->second.touched) victim = it;
  }
  if (victim == runs_.end()) return false;
  const std::string why =
      fmt::format("evicted: the rendezvous was full and {} held the most registrations ({})",
                  heaviest->first, heaviest->second.held);
  Erase(victim, why, &out.replies, out.notes);
  ++counters_.evicted;
  return true;
}

void Registry::Insert(Run& run, const std::string& run_id, int rank, Entry entry) {
  Source& s = sources_[entry.source];
  ++s.held;
  ++s.runs[run_id];
  ++registrations_;
  run.entries[rank] = std::move(entry);
}

void Registry::Remove(Run& run, const std::string& run_id, int rank) {
  auto e = run.entries.find(rank);
  if (e == run.entries.end()) return;
  auto s = sources_.find(e->second.source);
  if (s != sources_.end()) {
    --s->second.held;
    if (--s->second.runs[run_id] <= 0) s->second.runs.erase(run_id);
  }
  --registrations_;
  run.entries.erase(e);
}

// Forgets a run; when `notify`, its waiting clients are told why (so they fail at once instead of
// at their deadline).
Registry::RunMap::iterator Registry::Erase(RunMap::iterator it, const std::string& why,
                                           Outbox* notify, std::vector<std::string>& notes) {
  Run& run = it->second;
  const std::string message = fmt::format("run '{}' {}; register again", it->first, why);
  if (notify != nullptr && !run.completed) {
    const Bytes reply = ErrorReply(message);
    for (const auto& [rank, e] : run.entries) Notify(e, reply, *notify);
  }
  notes.push_back(fmt::format("run '{}' ({} of {} ranks registered) {}", it->first,
                              run.entries.size(), run.size, why));
  while (!run.entries.empty()) Remove(run, it->first, run.entries.begin()->first);
  return runs_.erase(it);
}

void Registry::CompleteIfFull(Run& run, const std::string& run_id, const Now& now, Outcome& out) {
  if (run.completed || static_cast<int>(run.entries.size()) != run.size) return;
  run.completed = now.steady;
  ++counters_.completed;
  const Bytes reply = EncodeReply({true, {}, EndpointList(run)});
  for (const auto& [rank, e] : run.entries) Notify(e, reply, out.replies);
  out.notes.push_back(fmt::format("run '{}' complete: all {} ranks registered{}", run_id, run.size,
                                  verifier_ ? " with trusted signatures" : ""));
}

void Registry::Notify(const Entry& e, const Bytes& reply, Outbox& out) {
  out.emplace_back(e.client, reply);
  if (!e.retry_client.empty()) out.emplace_back(e.retry_client, reply);
}

std::vector<std::string> Registry::EndpointList(const Run& run) {
  std::vector<std::string> list;
  list.reserve(run.entries.size());
  for (const auto& [rank, e] : run.entries) list.push_back(e.endpoint);
  return list;
}

std::vector<std::string> Registry::Expire(const Now& now) {
  std::vector<std::string> notes;
  for (auto it = runs_.begin(); it != runs_.end();) {
    const Run& run = it->second;
    if (run.completed ? now.steady - *run.completed > limits_.complete_ttl
                      : now.steady - run.touched > limits_.run_ttl) {
      ++counters_.expired;
      it = Erase(it, run.completed ? "forgotten (finished)" : "expired (incomplete, untouched)",
                 nullptr, notes);
    } else {
      ++it;
    }
  }
  const double refill_s = limits_.burst / std::max(limits_.requests_per_second, 1e-9);
  std::erase_if(sources_, [&](const auto& kv) {
    return kv.second.held == 0 &&
           std::chrono::duration<double>(now.steady - kv.second.refilled).count() >= refill_s;
  });
  return notes;
}

void Registry::Refuse(const std::string& client, std::string reason, std::string message,
                      Outcome& out) {
  ++counters_.refused[reason];
  out.replies.emplace_back(client, ErrorReply(message));
  out.reason = std::move(reason);
  out.message = std::move(message);
}

RegistryStats Registry::stats() const {
  RegistryStats s = counters_;
  s.runs = runs_.size();
  s.registrations = registrations_;
  s.sources = sources_.size();
  return s;
}

}  // namespace p2p::broker::rendezvous
