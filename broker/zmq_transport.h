// ZmqTransport: a brokerless ZeroMQ mesh between the ranks of one run (spec: docs/wire-format.md).
//
// Rank i binds one ROUTER on its own endpoint and connects one DEALER to every other rank's
// ROUTER; its DEALERs carry routing id "r<i>-<random nonce>", so a ROUTER knows which rank each
// frame claims to come from. That is a claim, not a proof: anyone who can reach a ROUTER can
// connect claiming any rank, so a ROUTER keeps each connection apart (broker/zmq_links.h) and
// delivers all of them as the rank they claim; sync/ authenticates the envelopes and names the
// connection that proved itself (ConfirmSender), which from then on is kept ahead of the others. A
// HELLO that disagrees with the run is counted and ignored, never fatal (an unauthenticated packet
// must not stop a run). Data flows DEALER(i) -> ROUTER(j) only. Every message is chunked
// (broker/chunking.h) into frames of at most max_chunk_bytes of payload; the ROUTER's
// ZMQ_MAXMSGSIZE drops any peer that sends a bigger frame, and the bounded Reassembler (per
// connection) holds only what arrived. Connect performs a HELLO / HELLO_ACK handshake in both
// directions, so it returns only when every rank reached us and we reached every rank.
//
// Socket options: finite ZMQ_LINGER (queued frames are flushed for at most `linger` on Close),
// ZMTP heartbeats, ROUTER_MANDATORY on the ROUTER, ZMQ_IMMEDIATE on DEALERs (frames are only
// queued to a live connection; a send to a vanished rank fails with Unavailable after
// send_timeout instead of piling up).
//
// Thread-safety: ZeroMQ sockets are single-threaded. Connect, Send, Broadcast, Receive and Close
// must be called from one thread at a time (the transport's owner); Stats() may be called from any
// thread. The transport owns its ZeroMQ context; Close (or the destructor) terminates it.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "broker/chunking.h"
#include "broker/transport.h"
#include "broker/zmq_endpoint.h"

namespace p2p::broker {

struct ZmqTransportOptions {
  int rank = 0;
  int size = 1;
  // endpoints[i] is where rank i is reachable ("tcp://host:port" or "ipc://path"; see
  // ParsePeerList). May be left empty at Create and supplied with SetEndpoints before Connect
  // (the rendezvous flow: bind an ephemeral port, register bound_endpoint(), learn the rest).
  std::vector<std::string> endpoints;
  // What to bind; empty = BindEndpointFor(endpoints[rank]). "tcp://127.0.0.1:*" binds a free port.
  std::string bind_endpoint;
  std::string run_id;  // carried in HELLO; a peer of another run is refused. May be empty.
  // 4 MiB: measured against 1 MiB (bench/README.md, 4 peers x 10M floats on loopback), ~30% less
  // CPU per allgather round; 256 KiB and 16 MiB were no better. Every rank must use the same.
  size_t max_chunk_bytes = size_t{4} << 20;
  uint64_t max_message_bytes = uint64_t{256} << 20;  // after reassembly
  // Bytes held for incomplete messages, all connections together (> max_message_bytes); one
  // connection may hold at most min(this, 2 * max_message_bytes).
  uint64_t max_pending_bytes = uint64_t{1} << 30;
  int hwm = 1000;  // frames queued per peer and direction
  std::chrono::milliseconds linger{1000};
  std::chrono::milliseconds send_timeout{10000};  // a blocked frame send fails after this
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds heartbeat_timeout{5000};
  std::chrono::milliseconds reassembly_timeout{
      60000};  // incomplete messages idle longer are dropped
  // Connections kept per claimed rank; a new one replaces the one heard from least recently.
  int max_links_per_rank = 4;
  // Joining a running run (`p2ptrain peer --join`): the members sent their HELLOs when the run
  // started, so Connect waits only for every rank's HELLO_ACK (our connections to them).
  bool joining = false;
};

// The reassembly limits a ZmqTransport with `options` uses.
ReassemblyLimits ZmqReassemblyLimits(const ZmqTransportOptions& options);

class ZmqTransport final : public Transport {
 public:
  // Validates the options, creates the context and binds the ROUTER. InvalidArgument for bad
  // options; IoError if the bind fails (e.g. the port is taken).
  static Result<std::unique_ptr<ZmqTransport>> Create(ZmqTransportOptions options);
  ~ZmqTransport() override;

  // The address the ROUTER actually bound (ZMQ_LAST_ENDPOINT), e.g. "tcp://127.0.0.1:41235".
  const std::string& bound_endpoint() const;
  // Supplies the endpoint list when it was not known at Create. Only before Connect.
  Status SetEndpoints(std::vector<std::string> endpoints);

  int rank() const override;
  int size() const override;
  // HELLO handshake with every rank. Timeout naming the ranks that did not answer (and the
  // inconsistent HELLOs that were ignored); InvalidArgument if a rank's endpoint answers our HELLO
  // for another run id or size. An inconsistent HELLO is only counted (Stats().rejected) and
  // logged once per reason and claimed rank.
  Status Connect(Deadline deadline) override;
  // Unavailable if `to_rank` cannot take the frames within send_timeout (gone or not draining).
  Status Send(int to_rank, std::span<const std::byte> msg) override;
  Status Broadcast(std::span<const std::byte> msg) override;
  // Blocks in zmq_poll until a whole message is reassembled or the deadline passes. A deadline in
  // the past still picks up what already arrived. Malformed frames are dropped and counted.
  Result<std::optional<Message>> Receive(Deadline deadline) override;
  TransportStats Stats() const override;
  // Makes the connection that delivered `link` rank's proven one (broker/zmq_links.h): unproven
  // connections claiming that rank can no longer replace it or evict its incomplete messages.
  // Ignored when that connection is gone or claims another rank.
  void ConfirmSender(int rank, uint64_t link) override;
  // Closes the sockets and terminates the context; blocks at most `linger` flushing. Idempotent.
  Status Close() override;

  struct Impl;

 private:
  explicit ZmqTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace p2p::broker
