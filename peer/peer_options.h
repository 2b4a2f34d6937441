// Options of `p2ptrain peer` beyond training: how to reach the other peers and how to sync.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace p2p::peer {

struct PeerOptions {
  std::string transport = "zmq";  // zmq | amqp
  // amqp: amqp[s]://user:pass@host:port/vhost
  std::string broker_url = "amqp://guest:guest@127.0.0.1:5672/";
  std::string tls_ca;         // amqps: CA bundle that signed the broker's certificate
  bool tls_insecure = false;  // amqps: skip certificate verification (testing only)
  // zmq: every rank's endpoint ("host:port", "tcp://host:port" or "ipc://path"), rank order...
  std::string peers;
  // ...or the `p2ptrain broker` rendezvous to register with and learn them from.
  std::string rendezvous;
  std::string bind = "tcp://*:0";  // zmq + rendezvous: what this peer binds (0 = a free port)
  std::string advertise;           // zmq + rendezvous: host others reach us at (default hostname)
  std::string run_id;              // names the run on the broker; all peers of a run share it
  std::string sync_every = "1";    // N minibatches per round, or "epoch"
  // auto: reduce-scatter-average for uncompressed runs of 3 or more peers (the same bits with
  // 2(W-1)/W instead of W-1 gradients sent per peer), else allgather-average. FinishPeerFlags
  // resolves it.
  std::string strategy = "auto";
  double significance = 0.01;  // --strategy mlless: v of the significance filter (sync/mlless.h)
  int staleness = 0;           // rounds a peer may run ahead (sync/staleness.h); 0: synchronous
  std::string compression = "none";  // codec spec (sync/codecs/codec.h); canonical after Finish
  int qsgd_bits = 0;                 // --qsgd-bits (0: not given)
  int64_t qsgd_bucket = -1;          // --qsgd-bucket (-1: not given)
  double topk_ratio = 0;             // --topk-ratio (0: not given)
  // Membership (docs/membership.md): a member silent for peer_timeout_s is suspected; heartbeats
  // every heartbeat_s keep a live one audible (0: no heartbeats and no failure detection; rounds
  // then wait peer_timeout_s at most). Connecting, joining and the start agreement wait up to
  // connect_timeout_s.
  double peer_timeout_s = 10;
  double heartbeat_s = 1;
  // With heartbeats: the longest one round may wait for live members before the run fails (a
  // member that keeps heartbeating but never delivers, after RESENDs, must not stall it forever).
  double round_timeout_s = 1800;
  double connect_timeout_s = 120;
  std::string on_failure = "continue";  // continue: survivors go on in a new view; stop: fail
  // Rejoin a running run as a restarted rank (docs/membership.md, "Rejoining"): handshake again,
  // then wait up to join_timeout_s for the members to admit this rank with the run's state.
  bool join = false;
  double join_timeout_s = 600;
  // How the W gradients of a round become one (sync/rules/rule.h); canonical after Finish.
  std::string aggregation = "mean";
  // Experiments only (peer/attack.h): the attack, and the ranks that carry it out.
  std::string attack;
  std::string attack_ranks;
  // Identity and trust (peer/peer_security.h, docs/security.md).
  std::string key;           // this peer's private key (PEM), from `p2ptrain keygen`
  std::string key_pass_env;  // NAME of the environment variable holding the key's passphrase
  std::string trust;         // directory or PEM file of the public keys allowed in the run
  std::string manifest;      // optional: "<rank> <fingerprint>" lines binding ranks to keys
  bool insecure = false;     // no authentication at all (benchmarking only)
  // SPIRT (--strategy spirt, docs/spirt.md): this peer's Redis database, the file naming every
  // rank's (peer/spirt_peer.h), in-database (on) or client-side (off) arithmetic, key TTL.
  std::string store;
  std::string store_password_file;
  std::string store_peers;
  std::string in_db = "on";
  double store_ttl_s = 86400;
};

}  // namespace p2p::peer
