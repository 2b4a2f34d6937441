// The rendezvous service's state: the runs being assembled, bounded in memory per source address
// and in total, with per-source rate limiting, expiry and eviction, and (optionally) signed
// registrations. Pure logic: time comes in as an argument, so tests drive it deterministically;
// broker/rendezvous.cc feeds it requests from the ROUTER socket.
//
// Why these bounds: anyone who can reach the service can send it registrations. Memory grows only
// with registrations actually held (never with a run's declared size), each of at most a few
// hundred bytes, and at most `max_registrations` in total and `max_per_source` per source address.
// When the service is full, a new registration from a source holding fewer registrations than the
// heaviest source evicts that heaviest source's oldest incomplete run, so a flood from some
// addresses cannot lock out a client from another address.
//
// Thread-safety: none; the service loop owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "broker/rendezvous_wire.h"

namespace p2p::broker::rendezvous {

struct Limits {
  size_t max_runs = 1024;                    // runs held at once
  size_t max_registrations = 16384;          // registrations held at once, all runs together
  size_t max_per_source = 256;               // registrations held at once from one source address
  size_t max_sources = 32768;                // source addresses remembered for rate limiting
  double requests_per_second = 20;           // per source address, sustained...
  double burst = 100;                        // ...with bursts up to this many requests
  std::chrono::seconds run_ttl{600};         // an incomplete run untouched this long is forgotten
  std::chrono::seconds complete_ttl{60};     // a complete run is kept this long to answer retries
  std::chrono::seconds max_clock_skew{300};  // signed: |signing time - now| must be within this
};

// Checks one signature: "" when `key_id` names a trusted key whose signature over `message` is
// `signature`; otherwise the refusal reason, "untrusted_key" or "bad_signature".
using Verifier =
    std::function<std::string(std::span<const std::byte> key_id, std::span<const std::byte> message,
                              std::span<const std::byte> signature)>;

struct Now {
  Clock::time_point steady;
  int64_t unix_ms = 0;  // wall clock, only to check signing times
};

struct RegistryStats {
  size_t runs = 0;
  size_t registrations = 0;
  size_t sources = 0;
  uint64_t completed = 0;
  uint64_t expired = 0;
  uint64_t evicted = 0;
  std::map<std::string, uint64_t> refused;  // by reason
};

class Registry {
 public:
  using Outbox = std::vector<std::pair<std::string, Bytes>>;  // (client routing id, reply)
  struct Outcome {
    Outbox replies;
    std::string reason;              // empty when accepted; else why it was refused
    std::string message;             // the refusal, as sent to the client
    std::vector<std::string> notes;  // events worth a log line (run complete, run evicted)
  };

  // Without a verifier registrations are unauthenticated; with one, each must be signed by a key
  // the verifier accepts.
  Registry(const Limits& limits, Verifier verifier);

  // One request from `client` (ZeroMQ routing id) at `source` (its IP address).
  Outcome Handle(const std::string& client, const std::string& source,
                 const Result<Request>& request, const Now& now);
  // Forgets runs past their TTL and idle sources. Returns the notes.
  std::vector<std::string> Expire(const Now& now);

  RegistryStats stats() const;

 private:
  struct Entry {
    std::string endpoint;
    // Routing ids to answer: the first registration's, and the latest retry's (a retry must not
    // take the answer away from the original client: anyone can resend the same registration).
    std::string client;
    std::string retry_client;
    std::string source;
    Bytes key_id;  // signed mode: the key that holds the rank
    uint64_t unix_ms = 0;
  };
  struct Run {
    int size = 0;
    std::map<int, Entry> entries;  // by rank; only ranks that registered
    Clock::time_point touched;
    std::optional<Clock::time_point> completed;
  };
  struct Source {
    double tokens = 0;
    Clock::time_point refilled;
    size_t held = 0;                  // registrations held
    std::map<std::string, int> runs;  // run id -> registrations held in it
  };
  using RunMap = std::map<std::string, Run>;

  std::optional<std::pair<std::string, std::string>> Admit(const std::string& source,
                                                           const Now& now);
  std::optional<std::pair<std::string, std::string>> CheckSignature(const Request& r,
                                                                    const Now& now) const;
  void Register(const std::string& client, const std::string& source, const Request& r,
                const Now& now, Outcome& out);
  bool Reuse(RunMap::iterator it, const std::string& client, const Request& r, const Now& now,
             Outcome& out);
  bool KeyIsFree(const Run& run, const std::string& client, const Request& r, Outcome& out);
  bool StartAgain(RunMap::iterator it, Outcome& out);
  bool HasSourceRoom(const std::string& client, const std::string& source, Outcome& out);
  bool MakeRoom(const std::string& client, const std::string& source, const std::string& keep,
                bool new_run, const Now& now, Outcome& out);
  bool EvictFromHeaviest(const std::string& source, const std::string& keep, Outcome& out);
  void Insert(Run& run, const std::string& run_id, int rank, Entry entry);
  void Remove(Run& run, const std::string& run_id, int rank);
  RunMap::iterator Erase(RunMap::iterator it, const std::string& why, Outbox* notify,
                         std::vector<std::string>& notes);
  void CompleteIfFull(Run& run, const std::string& run_id, const Now& now, Outcome& out);
  static std::vector<std::string> EndpointList(const Run& run);
  static void Notify(const Entry& e, const Bytes& reply, Outbox& out);
  void Refuse(const std::string& client, std::string reason, std::string message, Outcome& out);

  Limits limits_;
  Verifier verifier_;
  RunMap runs_;
  std::map<std::string, Source> sources_;
  size_t registrations_ = 0;
  RegistryStats counters_;
};

}  // namespace p2p::broker::rendezvous
