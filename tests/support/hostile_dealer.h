// A hostile raw ZeroMQ DEALER for tests of the mesh's ROUTER (broker/zmq_transport.h): it connects
// with a routing id of its choice, sends whatever frames a test forges, and can send the mesh's
// HELLO control frame (docs/wire-format.md §3) and block until the ROUTER answered it. It uses its
// own context and answers ZMTP heartbeats (libzmq does that for every socket), so it stays
// connected as long as it lives; it may connect before the ROUTER binds (libzmq retries).
// Header-only: used by tests that link only p2p_broker and by the peer tests.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

namespace p2p::test {

class HostileDealer {
 public:
  HostileDealer(const std::string& endpoint, const std::string& routing_id) {
    socket_.set(zmq::sockopt::routing_id, routing_id);
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::heartbeat_ivl, 100);
    socket_.set(zmq::sockopt::heartbeat_timeout, 5000);
    socket_.set(zmq::sockopt::rcvtimeo, 60000);  // a deadline, not a pause: recv returns on arrival
    socket_.connect(endpoint);
  }

  void Send(const std::vector<std::byte>& frame) {
    ASSERT_TRUE(socket_.send(zmq::buffer(frame.data(), frame.size()), zmq::send_flags::none));
  }

  // Sends a HELLO and blocks until the ROUTER answered it: then it has read (and judged) it and
  // every frame this dealer sent before (a connection's frames are read in order).
  void HelloAndWaitForAck(uint32_t rank, uint32_t size, const std::string& run_id) {
    Send(Hello(rank, size, run_id));
    zmq::message_t ack;
    ASSERT_TRUE(socket_.recv(ack)) << "no HELLO_ACK within 60 s";
    EXPECT_TRUE(ack.size() >= 4 && std::memcmp(ack.data(), "P2PZ", 4) == 0);
  }

  // The mesh's HELLO: magic "P2PZ", version 1, kind 1, 2 reserved, rank, size, run id.
  static std::vector<std::byte> Hello(uint32_t rank, uint32_t size, const std::string& run_id) {
    std::vector<std::byte> b(17 + run_id.size());
    std::memcpy(b.data(), "P2PZ", 4);
    b[4] = std::byte{1};  // version
    b[5] = std::byte{1};  // HELLO
    for (int i = 0; i < 4; ++i) {
      b[8 + i] = static_cast<std::byte>(rank >> (8 * i));
      b[12 + i] = static_cast<std::byte>(size >> (8 * i));
    }
    b[16] = static_cast<std::byte>(run_id.size());
    std::memcpy(b.data() + 17, run_id.data(), run_id.size());
    return b;
  }

 private:
  zmq::context_t ctx_;
  zmq::socket_t socket_{ctx_, zmq::socket_type::dealer};
};

// Squatters that keep talking: `n` raw DEALERs on `endpoint` with routing ids "r1-squat<i>" (each
// claims rank 1), each sending junk frames from its own thread as fast as the ROUTER takes them,
// until destroyed. Busy connections are what a least-recently-heard replacement favours.
class SquatterFlood {
 public:
  SquatterFlood(const std::string& endpoint, int n) {
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this, endpoint, i] {
        zmq::context_t ctx;
        zmq::socket_t s(ctx, zmq::socket_type::dealer);
        s.set(zmq::sockopt::routing_id, fmt::format("r1-squat{}", i));
        s.set(zmq::sockopt::linger, 0);
        s.set(zmq::sockopt::sndtimeo, 100);  // so that the stop is seen while the HWM is full
        s.connect(endpoint);
        const std::string junk = "not a chunk, but traffic on a connection claiming rank 1";
        while (!stop_) (void)s.send(zmq::buffer(junk), zmq::send_flags::none);
      });
    }
  }
  SquatterFlood(const SquatterFlood&) = delete;
  SquatterFlood& operator=(const SquatterFlood&) = delete;
  ~SquatterFlood() {
    stop_ = true;
    for (std::thread& t : threads_) t.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

}  // namespace p2p::test
