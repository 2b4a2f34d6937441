// LossyTransport: a Transport that loses the envelopes a filter selects and passes everything
// else to a real transport. Real sockets do not lose frames on demand; this is how tests script
// a lost message (sync/membership view changes, the mailbox's RESEND recovery).
#pragma once

#include <functional>
#include <utility>

#include "broker/envelope.h"
#include "broker/transport.h"

namespace p2p::sync::test {

class LossyTransport final : public broker::Transport {
 public:
  using Filter = std::function<bool(int to, const broker::Envelope&)>;
  LossyTransport(broker::Transport& inner, Filter drop) : inner_(inner), drop_(std::move(drop)) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  Status Connect(broker::Deadline d) override { return inner_.Connect(d); }
  Status Send(int to, std::span<const std::byte> msg) override {
    auto env = broker::DecodeEnvelope(msg);
    if (env.ok() && drop_(to, *env)) return Status::Ok();
    return inner_.Send(to, msg);
  }
  Status Broadcast(std::span<const std::byte> msg) override { return inner_.Broadcast(msg); }
  Result<std::optional<broker::Message>> Receive(broker::Deadline d) override {
    return inner_.Receive(d);
  }
  broker::TransportStats Stats() const override { return inner_.Stats(); }
  Status Close() override { return inner_.Close(); }

 private:
  broker::Transport& inner_;
  Filter drop_;
};

}  // namespace p2p::sync::test
