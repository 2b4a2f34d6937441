// A hostile rendezvous client for tests: a raw ZeroMQ DEALER that sends whatever bytes it is
// given from a chosen loopback address, and reads the service's replies with a deadline.
// Header-only (tests of broker/ do not link the test support library).
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "broker/envelope.h"
#include "broker/rendezvous_wire.h"
#include "broker/zmq_endpoint.h"
#include "broker/zmq_util.h"

namespace p2p::test {

using broker::Bytes;

// A hostile client: a raw DEALER that connects from `source_ip` (any 127.x.y.z address is this
// host's loopback on Linux, so one test can play many client addresses) and sends whatever it is
// told.
class RawClient {
 public:
  RawClient(const std::string& service, const std::string& source_ip)
      : socket_(context_, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::sndhwm, 100000);
    const std::string hostport = service.substr(service.find("://") + 3);
    socket_.connect(fmt::format("tcp://{}:0;{}", source_ip, hostport));
  }
  void Send(const Bytes& bytes) {
    ASSERT_TRUE(socket_.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none));
  }
  // Sends a request the service always answers (an invalid one) and returns every reply that
  // arrived before its answer: requests on one connection are handled in order, so everything
  // sent before has been handled then.
  std::vector<broker::rendezvous::Reply> Sync() {
    Send(Bytes{std::byte{0xc1}});  // 0xc1: a byte msgpack never uses
    std::vector<broker::rendezvous::Reply> replies;
    while (auto reply = Next()) {
      if (!reply->ok && reply->error.find("malformed") != std::string::npos) return replies;
      replies.push_back(*reply);
    }
    return replies;
  }
  // The next `n` replies.
  std::vector<broker::rendezvous::Reply> Receive(size_t n) {
    std::vector<broker::rendezvous::Reply> replies;
    while (replies.size() < n) {
      auto reply = Next();
      if (!reply) break;
      replies.push_back(*reply);
    }
    return replies;
  }

 private:
  // The next reply (an error reply decodes whatever run size is given); nullopt after 60 s.
  std::optional<broker::rendezvous::Reply> Next() {
    zmq_pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(60000)) == 0) {
      ADD_FAILURE() << "no answer from the rendezvous";
      return std::nullopt;
    }
    zmq::message_t m;
    (void)socket_.recv(m, zmq::recv_flags::none);
    auto reply = broker::rendezvous::DecodeReply(broker::zmq_util::AsBytes(m), 1);
    EXPECT_TRUE(reply.ok()) << reply.status().ToString();
    if (!reply.ok()) return broker::rendezvous::Reply{false, "undecodable", {}};
    return *reply;
  }

  zmq::context_t context_{1};
  zmq::socket_t socket_;
};

// A registration as large as the protocol allows: a 128-byte run id, a 256-byte endpoint and
// the largest declared size, which made the old service allocate for every rank of it.
inline Bytes BigRegistration(const std::string& tag, int i) {
  broker::rendezvous::Request r;
  r.run_id = fmt::format("{}-{:04}-", tag, i);
  r.run_id.resize(broker::kMaxRunIdBytes, 'x');
  r.rank = 0;
  r.size = 4096;
  r.endpoint = "tcp://" + std::string(broker::kMaxEndpointBytes - 12, 'h') + ":1";
  return broker::rendezvous::EncodeRequest(r);
}

}  // namespace p2p::test
