// Writes the seed corpus of every fuzz target: real messages made by the real encoders (an
// envelope, its chunk frames, codec payloads, offload tasks and results, rendezvous requests and
// replies), one file per seed in OUT_DIR/<target>/. scripts/fuzz.sh runs it before fuzzing, and
// the replay tests (tests/fuzz/CMakeLists.txt) run every target over its output.
// Usage: fuzz_seeds OUT_DIR
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "broker/chunking.h"
#include "broker/envelope.h"
#include "broker/rendezvous_wire.h"
#include "serverless_offload/remote_wire.h"
#include "serverless_offload/task.h"
#include "sync/codecs/codec.h"
#include "tests/fuzz/codec_specs.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

namespace fs = std::filesystem;
namespace b = p2p::broker;
using Bytes = std::vector<std::byte>;

class SeedWriter {
 public:
  // Starts from an empty OUT_DIR/target: no seed of an older version stays behind.
  SeedWriter(fs::path dir, std::string target) : dir_(std::move(dir) / target) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void Write(std::span<const std::byte> bytes) {
    const fs::path path = dir_ / ("seed-" + std::to_string(next_++));
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    if (!out) throw std::runtime_error("cannot write " + path.string());
  }
  void Write(std::string_view text) { Write(std::as_bytes(std::span(text))); }

 private:
  fs::path dir_;
  int next_ = 0;
};

// Gradient-like values: small, signed, a few exact zeros (as after ReLU).
std::vector<float> Gradient(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    const double x = double(rng() % 2001) / 1000.0 - 1.0;
    v[i] = i % 7 == 3 ? 0.0f : static_cast<float>(x * 0.01);
  }
  return v;
}

template <typename T>
T Unwrap(p2p::Result<T> r, const char* what) {
  if (!r.ok()) throw std::runtime_error(std::string(what) + ": " + r.status().message());
  return std::move(*r);
}

// A GRADIENT body as sync/gradient_body.h lays it out: u32 samples | codec payload.
Bytes GradientBody(const std::string& spec, size_t n) {
  auto config = Unwrap(p2p::sync::codecs::ParseCodecSpec(spec), "codec spec");
  auto codec = Unwrap(p2p::sync::codecs::MakeCodec(config), "codec");
  Bytes body = {std::byte{64}, std::byte{0}, std::byte{0}, std::byte{0}};
  if (!codec->Encode(Gradient(n, 7), 7, body).ok()) throw std::runtime_error("encode");
  return body;
}

std::vector<b::Envelope> Envelopes() {
  std::vector<b::Envelope> out;
  b::Envelope hello{.run_id = "fuzz-run", .type = b::MessageType::kHello, .sender = 1};
  out.push_back(hello);
  b::Envelope grad{.run_id = "fuzz-run",
                   .type = b::MessageType::kGradient,
                   .sender = 2,
                   .receiver = b::kAllRanks,
                   .epoch = 3,
                   .step = 17,
                   .seq = 42,
                   .codec = {"qsgd", {{"bits", 8}, {"bucket", 0}, {"ef", 0}}},
                   .body = GradientBody("qsgd", 200),
                   .signature = Bytes(32, std::byte{0xab})};
  out.push_back(grad);
  b::Envelope none = grad;
  none.codec = {"none", {}};
  none.body = GradientBody("none", 16);
  out.push_back(none);
  b::Envelope join{.run_id = "r", .type = b::MessageType::kJoin, .sender = 0, .receiver = 3};
  join.body = Bytes(96, std::byte{0x11});
  join.signature = Bytes(256, std::byte{0x5a});  // an RSA-2048 signature's length
  out.push_back(join);
  return out;
}

void EnvelopeSeeds(const fs::path& dir) {
  SeedWriter w(dir, "envelope");
  for (const b::Envelope& e : Envelopes()) w.Write(Unwrap(b::EncodeEnvelope(e), "envelope"));
}

// Frames as the ZeroMQ transport sends them (fuzz_chunk_reassembler.cc: sender = connection).
Bytes ZmqFrames(uint8_t link, uint64_t seq, const Bytes& message, size_t stride, bool reverse) {
  b::ChunkHeader h{.kind = b::FrameKind::kData, .from_rank = 1, .incarnation = 42, .seq = seq};
  auto frames = b::EncodeChunks(h, message, b::kChunkHeaderBytes + stride);
  if (reverse) std::reverse(frames.begin(), frames.end());
  Bytes out;
  for (const Bytes& f : frames) p2p::fuzz::AppendRecord(out, link, f);
  return out;
}

void ChunkSeeds(const fs::path& dir) {
  SeedWriter w(dir, "chunk_reassembler");
  const std::vector<b::Envelope> envs = Envelopes();
  const Bytes a = Unwrap(b::EncodeEnvelope(envs[1]), "envelope");
  const Bytes c = Unwrap(b::EncodeEnvelope(envs[0]), "envelope");
  const Bytes in_order = ZmqFrames(1, 0, a, 128, false);
  Bytes interleaved = ZmqFrames(1, 1, a, 128, true);
  const Bytes other = ZmqFrames(2, 7, c, 8, false);
  interleaved.insert(interleaved.end(), other.begin(), other.end());
  const Bytes single = ZmqFrames(3, 1, c, 1 << 16, false);
  Bytes with_timeout = ZmqFrames(1, 2, a, 128, false);
  with_timeout.resize(with_timeout.size() / 2);     // an incomplete message ...
  p2p::fuzz::AppendRecord(with_timeout, 0xff, {});  // ... timed out (see the target)
  const Bytes whole = ZmqFrames(1, 3, a, 128, false);
  with_timeout.insert(with_timeout.end(), whole.begin(), whole.end());
  for (const Bytes* s : {&in_order, static_cast<const Bytes*>(&interleaved), &single,
                         static_cast<const Bytes*>(&with_timeout)})
    w.Write(*s);
}

void AmqpSeeds(const fs::path& dir) {
  SeedWriter w(dir, "amqp_reassembler");
  const Bytes message = Unwrap(b::EncodeEnvelope(Envelopes()[1]), "envelope");
  b::ChunkHeader base{.kind = b::FrameKind::kData, .from_rank = 1, .incarnation = 99, .seq = 5};
  const auto chunks = b::EncodeChunks(base, message, b::kChunkHeaderBytes + 100);
  b::ChunkHeader hello = base;
  hello.kind = b::FrameKind::kHello;
  hello.from_rank = 2;
  const Bytes hello_frame = b::EncodeChunks(hello, {}, 4096).at(0);
  base.from_rank = 2;
  base.seq = 1;
  const Bytes small = b::EncodeChunks(base, message, 1 << 20).at(0);
  Bytes in_order, reversed, mixed;
  for (const Bytes& c : chunks) p2p::fuzz::AppendRecord(in_order, 0, c);
  for (auto it = chunks.rbegin(); it != chunks.rend(); ++it)
    p2p::fuzz::AppendRecord(reversed, 0, *it);
  p2p::fuzz::AppendRecord(mixed, 0, hello_frame);
  p2p::fuzz::AppendRecord(mixed, 0, small);
  p2p::fuzz::AppendRecord(mixed, 0, chunks.at(0));
  p2p::fuzz::AppendRecord(mixed, 0, small);  // a duplicate
  for (const Bytes* s : {&in_order, &reversed, &mixed}) w.Write(*s);
}

void CodecSeeds(const fs::path& dir) {
  SeedWriter w(dir, "codec_decode");
  for (size_t i = 0; i < p2p::fuzz::kCodecSpecCount; ++i) {
    for (size_t n : {size_t{1}, size_t{130}}) {
      Bytes seed = {std::byte(i)};
      const Bytes body = GradientBody(p2p::fuzz::kCodecSpecs[i], n);
      seed.insert(seed.end(), body.begin() + 4, body.end());  // the payload alone
      w.Write(seed);
    }
  }
}

void OffloadSeeds(const fs::path& dir) {
  namespace o = p2p::offload;
  SeedWriter w(dir, "offload_wire");
  o::Task task;
  task.id = 12;
  task.attempt = 1;
  task.model.hidden = {8};
  task.model.input = {1, 2, 3};
  task.params_path = "/dev/shm/p2ptrain-params-fuzz";
  task.params_version = 4;
  task.num_params = 16;
  task.reply_to = "p2ptrain.pool.fuzz";
  task.x = p2p::ml::Matrix::Constant(2, 6, 0.5f);
  task.y = {3, 7};
  w.Write(o::EncodeTask(task));
  o::Task shared = task;
  shared.shared = {"/dev/shm/p2ptrain-slots-fuzz", 0, 128, 0, 0};
  w.Write(o::EncodeTask(shared));
  o::TaskResult result{.id = 12, .loss_sum = 1.5, .samples = 2, .compute_seconds = 0.01};
  result.gradient = Gradient(16, 3);
  result.worker = "host.1";
  const std::string r = o::EncodeResult(result);
  w.Write(r);
  w.Write(r + o::EncodeResult({.id = 13, .error = "bad parameters"}));  // a stream of two
  w.Write(o::EncodeParamsRequest({4, 16, "p2ptrain.worker.fuzz", "host.1"}));
  w.Write(o::EncodeParamsReply(4, "", Gradient(16, 5)));
  w.Write(o::EncodeParamsReply(4, "version 4 is gone", {}));
}

void RendezvousSeeds(const fs::path& dir) {
  namespace rw = b::rendezvous;
  SeedWriter w(dir, "rendezvous");
  w.Write(rw::EncodeRequest(
      {.run_id = "fuzz-run", .rank = 2, .size = 4, .endpoint = "tcp://10.0.0.2:5555"}));
  w.Write(
      rw::EncodeRequest({.run_id = "r", .rank = 0, .size = 1, .endpoint = "ipc:///tmp/p2p-fuzz"}));
  rw::Request signed_req{
      .run_id = "fuzz-run", .rank = 1, .size = 4, .endpoint = "tcp://10.0.0.1:5555"};
  signed_req.key_id = b::Bytes(rw::kKeyIdBytes, std::byte{7});
  signed_req.unix_ms = 1764900000000;
  signed_req.signature = b::Bytes(256, std::byte{9});
  w.Write(rw::EncodeRequest(signed_req));
  w.Write(rw::EncodeReply({.ok = true,
                           .endpoints = {"tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555",
                                         "tcp://h3:5555", "ipc:///tmp/p2p-4"}}));
  w.Write(
      rw::EncodeReply({.ok = false, .error = "rank 2 of run 'fuzz-run' is already registered"}));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR (writes OUT_DIR/<target>/seed-N)\n", argv[0]);
    return 2;
  }
  try {
    const fs::path dir = argv[1];
    EnvelopeSeeds(dir);
    ChunkSeeds(dir);
    AmqpSeeds(dir);
    CodecSeeds(dir);
    OffloadSeeds(dir);
    RendezvousSeeds(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
