#include "peer/checkpoint.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace p2p::peer {
namespace {

constexpr char kMagic[8] = {'P', '2', 'P', 'C', 'K', 'P', 'T', '1'};
// Bounds for untrusted lengths: a checkpoint is ours, but a corrupt one must not make us allocate
// terabytes before the CRC check could reject it.
constexpr uint64_t kMaxMetaBytes = 1 << 20;
constexpr uint64_t kMaxFloats = uint64_t{1} << 32;
constexpr uint32_t kMaxBuffers = 64;

template <typename T>
void Put(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void PutFloats(std::string& out, const std::vector<float>& v) {
  Put(out, static_cast<uint64_t>(v.size()));
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// Sequential reader over the file's bytes that fails instead of reading past the end.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  template <typename T>
  bool Get(T& v) {
    if (data_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(&v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool GetBytes(size_t n, std::string& out) {
    if (data_.size() - pos_ < n) return false;
    out.assign(data_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  bool GetFloats(std::vector<float>& v) {
    uint64_t n = 0;
    if (!Get(n) || n > kMaxFloats || (data_.size() - pos_) / sizeof(float) < n) return false;
    v.resize(n);
    std::memcpy(v.data(), data_.data() + pos_, n * sizeof(float));
    pos_ += n * sizeof(float);
    return true;
  }
  size_t pos() const { return pos_; }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

nlohmann::json MetaOf(const Checkpoint& c) {
  return {{"epoch", c.epoch},
          {"model", c.model},
          {"config", c.config},
          {"num_params", c.params.size()},
          {"optimizer", {{"step", c.optimizer.step}, {"lr", c.optimizer.lr}}},
          {"plateau",
           {{"best", c.plateau.best},
            {"bad_epochs", c.plateau.bad_epochs},
            {"has_best", c.plateau.has_best}}},
          {"early_stopping",
           {{"best", c.early_stopping.best},
            {"counter", c.early_stopping.counter},
            {"has_best", c.early_stopping.has_best}}},
          {"sync_buffers", c.sync_state.size()},
          {"model_buffers", !c.model_buffers.empty()},
          {"extra", c.extra}};
}

void ApplyMeta(const nlohmann::json& m, Checkpoint& c, bool& has_model_buffers) {
  c.epoch = m.at("epoch").get<int>();
  c.model = m.at("model").get<std::string>();
  c.config = m.at("config").get<std::string>();
  c.optimizer.step = m.at("optimizer").at("step").get<int64_t>();
  c.optimizer.lr = m.at("optimizer").at("lr").get<float>();
  const auto& p = m.at("plateau");
  c.plateau = {p.at("best").get<double>(), p.at("bad_epochs").get<int>(),
               p.at("has_best").get<bool>()};
  const auto& e = m.at("early_stopping");
  c.early_stopping = {e.at("best").get<double>(), e.at("counter").get<int>(),
                      e.at("has_best").get<bool>()};
  c.extra = m.value("extra", nlohmann::json::object());
  has_model_buffers = m.value("model_buffers", false);
  // Checkpoints from before the field existed have no sync state.
  c.sync_state.resize(m.value("sync_buffers", size_t{0}) <= kMaxBuffers
                          ? m.value("sync_buffers", size_t{0})
                          : kMaxBuffers + 1);
}

std::string Serialize(const Checkpoint& c) {
  std::string out(kMagic, sizeof(kMagic));
  const std::string meta = MetaOf(c).dump();
  Put(out, static_cast<uint64_t>(meta.size()));
  out += meta;
  PutFloats(out, c.params);
  Put(out, static_cast<uint32_t>(c.optimizer.buffers.size()));
  for (const auto& b : c.optimizer.buffers) PutFloats(out, b);
  for (const auto& b : c.sync_state) PutFloats(out, b);
  if (!c.model_buffers.empty()) PutFloats(out, c.model_buffers);
  const uint32_t crc = static_cast<uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(out.data()), static_cast<uInt>(out.size())));
  Put(out, crc);
  return out;
}

Status WriteAtomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return IoError("cannot create {}: {}", tmp, std::strerror(errno));
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      return IoError("writing {}: {}", tmp, std::strerror(err));
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) return IoError("flushing {}", tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return IoError("renaming {} to {}: {}", tmp, path, std::strerror(errno));
  }
  return Status::Ok();
}

Status Corrupt(const std::string& path, const char* what) {
  return DataLoss("checkpoint {} is corrupt: {} (delete it to start over)", path, what);
}

}  // namespace

std::string CheckpointPath(const std::string& dir) { return dir + "/checkpoint.bin"; }

Status SaveCheckpoint(const std::string& dir, const Checkpoint& ckpt) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return IoError("cannot create checkpoint directory {}: {}", dir, ec.message());
  return WriteAtomically(CheckpointPath(dir), Serialize(ckpt));
}

std::string SerializeCheckpoint(const Checkpoint& ckpt) { return Serialize(ckpt); }

Result<Checkpoint> LoadCheckpoint(const std::string& dir) {
  const std::string path = CheckpointPath(dir);
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("no checkpoint at {}", path);
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return ParseCheckpoint(data, path);
}

Result<Checkpoint> ParseCheckpoint(std::string_view data, const std::string& path) {
  if (data.size() < sizeof(kMagic) + 4 || std::memcmp(data.data(), kMagic, sizeof(kMagic)) != 0) {
    return Corrupt(path, "not a p2ptrain checkpoint (bad magic)");
  }
  uint32_t stored_crc = 0;
  std::memcpy(&stored_crc, data.data() + data.size() - 4, 4);
  const uLong crc =
      crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size() - 4));
  if (static_cast<uint32_t>(crc) != stored_crc) return Corrupt(path, "checksum mismatch");

  Reader r(data.substr(sizeof(kMagic), data.size() - sizeof(kMagic) - 4));
  Checkpoint c;
  uint64_t meta_len = 0;
  std::string meta;
  if (!r.Get(meta_len) || meta_len > kMaxMetaBytes || !r.GetBytes(meta_len, meta)) {
    return Corrupt(path, "bad metadata length");
  }
  bool has_model_buffers = false;
  try {
    ApplyMeta(nlohmann::json::parse(meta), c, has_model_buffers);
  } catch (const nlohmann::json::exception& e) {
    return Corrupt(path, "unreadable metadata");
  }
  uint32_t buffers = 0;
  if (!r.GetFloats(c.params) || !r.Get(buffers) || buffers > kMaxBuffers) {
    return Corrupt(path, "truncated parameters");
  }
  c.optimizer.buffers.resize(buffers);
  for (auto& b : c.optimizer.buffers) {
    if (!r.GetFloats(b)) return Corrupt(path, "truncated optimizer state");
  }
  if (c.sync_state.size() > kMaxBuffers) return Corrupt(path, "too many sync buffers");
  for (auto& b : c.sync_state) {
    if (!r.GetFloats(b)) return Corrupt(path, "truncated sync state");
  }
  if (has_model_buffers && !r.GetFloats(c.model_buffers)) {
    return Corrupt(path, "truncated BatchNorm buffers");
  }
  return c;
}

namespace {

// Creates and removes a file in `dir`: the same operations SaveCheckpoint needs.
Status ProbeWritable(const std::string& dir) {
  const std::string probe = fmt::format("{}/.p2ptrain-probe-{}", dir, ::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return IoError(
        "--checkpoint-dir {} is not writable: cannot create a file in it: {} (choose a "
        "writable directory)",
        dir, std::strerror(errno));
  }
  ::close(fd);
  if (::unlink(probe.c_str()) != 0) {
    return IoError("--checkpoint-dir {}: cannot remove {}: {} (choose a writable directory)", dir,
                   probe, std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace

Status CheckCheckpointDir(const std::string& dir, bool resume, bool overwrite) {
  if (dir.empty()) {
    if (overwrite) return InvalidArgument("--overwrite needs --checkpoint-dir");
    return Status::Ok();
  }
  if (resume && overwrite) {
    return InvalidArgument(
        "--resume continues from the checkpoint in {} and --overwrite replaces it: pass one", dir);
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir, ec)) {
    return IoError("cannot use --checkpoint-dir {}: {} (choose a writable directory)", dir,
                   ec ? ec.message() : "not a directory");
  }
  P2P_RETURN_IF_ERROR(ProbeWritable(dir));
  const std::string path = CheckpointPath(dir);
  if (resume || overwrite || !std::filesystem::exists(path, ec)) return Status::Ok();
  auto existing = LoadCheckpoint(dir);
  const std::string what = existing.ok()
                               ? fmt::format("a checkpoint after epoch {}", existing->epoch)
                               : "a checkpoint file";
  return InvalidArgument(
      "--checkpoint-dir {} already holds {} ({}); pass --resume to continue from it, or "
      "--overwrite to start over and replace it",
      dir, what, path);
}

}  // namespace p2p::peer
