// W connected transports of one kind, for running sync code over every transport the peers use:
// in-process, ZeroMQ on loopback TCP, and AMQP through the RabbitMQ at $P2P_AMQP_URL (or one
// tests/broker/amqp_test_broker.h starts). Ranks connect from their own threads, as peers do.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "broker/amqp_transport.h"
#include "broker/inproc_transport.h"
#include "broker/zmq_transport.h"
#include "common/status.h"
#include "tests/broker/amqp_test_broker.h"

namespace p2p::sync::test {

using Transports = std::vector<std::unique_ptr<broker::Transport>>;

inline Result<Transports> CreateTransports(const std::string& kind, int w,
                                           const std::string& run_id) {
  Transports out;
  if (kind == "inproc") {
    for (auto& t : broker::MakeInProcGroup(w)) out.push_back(std::move(t));
    return out;
  }
  if (kind == "zmq") {
    std::vector<std::string> endpoints;
    std::vector<broker::ZmqTransport*> zmq;
    for (int r = 0; r < w; ++r) {
      P2P_ASSIGN_OR_RETURN(
          auto t,
          broker::ZmqTransport::Create(
              {.rank = r, .size = w, .bind_endpoint = "tcp://127.0.0.1:*", .run_id = run_id}));
      endpoints.push_back(t->bound_endpoint());
      zmq.push_back(t.get());
      out.push_back(std::move(t));
    }
    for (auto* t : zmq) P2P_RETURN_IF_ERROR(t->SetEndpoints(endpoints));
    return out;
  }
  if (kind == "amqp") {
    const auto& broker = broker::amqp_test::Broker();
    if (!broker.error.empty()) return Unavailable("{}", broker.error);
    for (int r = 0; r < w; ++r) {
      broker::AmqpOptions o;
      o.url = broker.url;
      o.run_id = run_id;
      o.rank = r;
      o.size = w;
      P2P_ASSIGN_OR_RETURN(auto t, broker::AmqpTransport::Create(o));
      out.push_back(std::move(t));
    }
    return out;
  }
  return InvalidArgument("unknown transport kind '{}'", kind);
}

// Creates and connects W transports of `kind` (every rank's Connect on its own thread).
inline Result<Transports> ConnectedTransports(const std::string& kind, int w,
                                              const std::string& run_id) {
  P2P_ASSIGN_OR_RETURN(Transports ts, CreateTransports(kind, w, run_id));
  std::vector<Status> results(ts.size());
  std::vector<std::thread> threads;
  const auto deadline = broker::DeadlineIn(std::chrono::seconds(60));
  for (size_t r = 0; r < ts.size(); ++r) {
    threads.emplace_back([&, r] { results[r] = ts[r]->Connect(deadline); });
  }
  for (auto& t : threads) t.join();
  for (size_t r = 0; r < results.size(); ++r) {
    if (!results[r].ok()) return results[r].Annotate(fmt::format("{} rank {} connecting", kind, r));
  }
  return ts;
}

}  // namespace p2p::sync::test
