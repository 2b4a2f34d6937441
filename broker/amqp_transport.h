// AmqpTransport: the Transport over RabbitMQ (AMQP 0-9-1, rabbitmq-c), plain or TLS.
//
// Layout on the broker, per run (run id R, ranks 0..N-1):
//   exchange  p2p.R           direct, non-durable, auto-delete
//   queue     p2p.R.rank<r>   non-durable, non-exclusive, not auto-delete, x-expires
//   bindings  p2p.R.rank<r> <- "rank.<r>"                      point-to-point to r
//             p2p.R.rank<r> <- "bcast.<s>" for every s != r     broadcasts from s
// A broadcast is published ONCE with key "bcast.<s>"; the broker copies it into every queue but
// the sender's own. (Binding a shared "all" key would echo every broadcast - gradients of
// hundreds of MB - back to its sender only to be dropped; N-1 bindings per queue are cheap.)
//
// Why the queue is neither exclusive nor auto-delete: both are deleted when our connection
// drops, with the messages waiting in them. A plain queue survives a dropped connection, so
// peers keep publishing to it while we reconnect and nothing is lost. Non-durable with
// transient messages: a broker restart ends the run anyway, and persisting multi-MB gradients
// costs a disk write each. x-expires (default 10 min unused) removes the queue of a peer that
// crashed without Close.
//
// Cleanup: Close() flushes, cancels the consumer and deletes this peer's queue. The exchange is
// auto-delete, so RabbitMQ removes it when its last binding goes, i.e. with the last member's
// queue (or when the last crashed member's queue expires). Nobody has to be "last one out".
//
// Connect: declare topology (the first time also purging stale messages left in our queue by an
// earlier run with the same id), start consuming, then the hello protocol: broadcast HELLO;
// whoever receives a HELLO answers the sender directly with HELLO_REPLY. Each peer broadcasts
// only after its own bindings exist, so for any two peers the later one's HELLO reaches the
// earlier one, whose reply then reaches the later one: Connect returns once it has heard from
// all N-1 others, i.e. once every queue of the run exists. No polling, no sleeps.
//
// Delivery: at-least-once on the wire, exactly-once to the caller. Chunks (<= chunk_bytes,
// default 16 MiB: RabbitMQ 4.x's default max message size, under 3.x's 128 MiB) carry sender
// rank, incarnation, message seq and chunk index; publisher confirms are tracked and every
// unconfirmed chunk is republished after a reconnect; the receiver drops duplicate chunks and
// messages (broker redeliveries of unacked chunks after a reconnect, or those republishes).
// Chunks are acked once read into memory. Order is kept per sender.
//
// Threading: one background I/O thread owns the connection (amqp_io.h); the caller's thread
// talks to it through queues and waits with deadlines. Heartbeats (default 10 s) are serviced
// while the caller computes. On connection loss the I/O thread reconnects with backoff (up to
// reconnect_timeout) and redeclares the topology; Send/Receive meanwhile queue or wait. If it
// gives up, the next call returns its error.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "broker/transport.h"
#include "common/status.h"

namespace p2p::broker {

struct AmqpOptions {
  // amqp[s]://user:pass@host:port/vhost[?heartbeat=..&cacertfile=..&verify=..]; see amqp_url.h.
  std::string url = "amqp://guest:guest@127.0.0.1:5672/";
  std::string run_id;  // [A-Za-z0-9._-]{1,200}; names the exchange and queues: unique per run
  int rank = 0;
  int size = 1;
  // TLS (amqps only). Peer and hostname verification are on by default.
  std::string tls_ca_file;    // overrides ?cacertfile=
  bool tls_insecure = false;  // explicit opt-out of verification (like ?verify=verify_none)

  std::chrono::seconds heartbeat{10};  // ?heartbeat= in the URL wins
  uint16_t prefetch = 64;              // unacked deliveries the broker may push ahead
  size_t chunk_bytes = 16 << 20;       // max AMQP body per chunk, header included
  // Incoming messages (docs/wire-format.md §2.2): larger ones are rejected before anything is
  // allocated; at most 256 MiB, the envelope limit (broker/envelope.h).
  uint64_t max_message_bytes = 256ULL << 20;
  // Memory for incomplete incoming messages, per claimed sender and in total (> max_message_bytes);
  // the least recently active ones are dropped beyond it, and any idle for reassembly_timeout
  // (at least 2 x reconnect_timeout, so a reconnect never costs a message).
  uint64_t max_incomplete_bytes_per_sender = 512ULL << 20;
  uint64_t max_incomplete_bytes = 1ULL << 30;
  std::chrono::milliseconds reassembly_timeout{120'000};
  uint64_t max_pending_bytes = 1ULL << 30;        // Send blocks while this much is unconfirmed
  std::chrono::milliseconds rpc_timeout{10'000};  // each broker RPC
  std::chrono::milliseconds reconnect_timeout{60'000};  // then the transport fails
  std::chrono::milliseconds send_timeout{60'000};       // Send waiting for room (above)
  std::chrono::milliseconds close_timeout{10'000};      // Close flushing unconfirmed sends
  std::chrono::milliseconds queue_expiry{std::chrono::minutes(10)};  // orphan queues
};

class AmqpTransport final : public Transport {
 public:
  // Validates the options and parses the URL; no I/O until Connect.
  static Result<std::unique_ptr<AmqpTransport>> Create(AmqpOptions options);
  ~AmqpTransport() override;  // Close(), ignoring its status

  int rank() const override;
  int size() const override;
  // Connects (retrying with backoff while the broker is unreachable), declares the topology and
  // runs the hello protocol. Unavailable names host:port when the broker cannot be reached by
  // the deadline; InvalidArgument for ACCESS_REFUSED; Timeout names the ranks not heard from.
  // May be called again after a Timeout.
  Status Connect(Deadline deadline) override;
  // Copies `msg`, hands it to the I/O thread and returns; the broker's confirm comes later (see
  // Flush). Blocks only while max_pending_bytes are unconfirmed, at most send_timeout.
  Status Send(int to_rank, std::span<const std::byte> msg) override;
  Status Broadcast(std::span<const std::byte> msg) override;
  bool FansOutElsewhere() const override { return true; }
  Result<std::optional<Message>> Receive(Deadline deadline) override;
  TransportStats Stats() const override;
  // Flushes (up to close_timeout), deletes this peer's queue, closes the connection, stops the
  // I/O thread. Idempotent; later calls return the first result.
  Status Close() override;

  // Waits until every message given to Send/Broadcast so far is confirmed by the broker.
  Status Flush(Deadline deadline);
  uint64_t reconnects() const;        // connection losses recovered from (or being recovered)
  uint64_t incomplete_bytes() const;  // memory held now for incomplete incoming messages
  const std::string& exchange_name() const;
  std::string queue_name(int rank) const;

 private:
  struct State;
  explicit AmqpTransport(std::unique_ptr<State> state);
  Status Enqueue(std::vector<Bytes> bodies, const std::string& key);
  Status CheckUsable() const;
  Status WaitForPeers(Deadline deadline);
  Status StopIoThread();
  Status DeleteQueueAfterFailure();

  std::unique_ptr<State> s_;
};

}  // namespace p2p::broker
