// The shard file format (docs/shard-format.md): encoding, validation, atomic writes, splits.
#include "ml/shard_file.h"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace p2p::ml {
namespace {

constexpr char kMagic[8] = {'P', '2', 'P', 'S', 'H', 'A', 'R', 'D'};
constexpr size_t kMaxNameBytes = 255;
constexpr size_t kFixedHeaderBytes = 8 + 4 + 4 + 4 * 4 + 8 + 4 * 4 + 8;  // all but the name
constexpr size_t kCrcBytes = 4;
constexpr int kMaxSide = 1 << 16;
constexpr int64_t kMaxFeatures = int64_t{1} << 24;
constexpr int kMaxClasses = 1 << 16;
constexpr int kMaxPeers = 1 << 20;
constexpr size_t kChunkBytes = size_t{1} << 20;

// The header fields, as written and as read.
struct Header {
  std::string dataset;
  Shape shape;
  int num_classes = 0;
  uint64_t count = 0;
  ShardInfo info;
};

// Empty if the header is self-consistent, else what is wrong with it.
std::string HeaderProblem(const Header& h) {
  const Shape& s = h.shape;
  if (h.dataset.size() > kMaxNameBytes)
    return fmt::format("dataset name over {} bytes", kMaxNameBytes);
  if (s.c < 1 || s.h < 1 || s.w < 1 || s.c > kMaxSide || s.h > kMaxSide || s.w > kMaxSide ||
      int64_t{s.c} * s.h * s.w > kMaxFeatures) {
    return fmt::format("implausible sample shape {}x{}x{}", s.c, s.h, s.w);
  }
  if (h.num_classes < 1 || h.num_classes > kMaxClasses) {
    return fmt::format("implausible num_classes {}", h.num_classes);
  }
  const ShardInfo& i = h.info;
  if (i.size < 1 || i.size > kMaxPeers || i.rank < 0 || i.rank >= i.size) {
    return fmt::format("rank {} of size {} is not a valid peer", i.rank, i.size);
  }
  if (i.batches < 0 || i.batch < -1 || (i.batch >= 0 && i.batch >= i.batches)) {
    return fmt::format("batch {} of {} batches is not valid", i.batch, i.batches);
  }
  return {};
}

// Bytes per sample: float32 features then an int32 label.
uint64_t RecordBytes(const Shape& s) { return 4 * static_cast<uint64_t>(s.size()) + 4; }

// ---- little-endian encoding ----

void PutLe(std::vector<uint8_t>& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint64_t GetLe(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}
uint32_t ByteSwap(uint32_t v) {
  return (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
}
// 32-bit words between host order and little-endian, in place; a no-op on little-endian hosts.
void ToFromLe32(uint32_t* words, size_t n) {
  if constexpr (std::endian::native != std::endian::little) {
    for (size_t i = 0; i < n; ++i) words[i] = ByteSwap(words[i]);
  }
}

std::vector<uint8_t> EncodeHeader(const Header& h) {
  std::vector<uint8_t> out(kMagic, kMagic + sizeof kMagic);
  PutLe(out, kShardFormatVersion, 4);
  PutLe(out, h.dataset.size(), 4);
  out.insert(out.end(), h.dataset.begin(), h.dataset.end());
  for (int v : {h.shape.c, h.shape.h, h.shape.w, h.num_classes})
    PutLe(out, static_cast<uint32_t>(v), 4);
  PutLe(out, h.count, 8);
  for (int v : {h.info.rank, h.info.size, h.info.batch, h.info.batches}) {
    PutLe(out, static_cast<uint32_t>(v), 4);
  }
  PutLe(out, h.info.seed, 8);
  return out;
}

// Decodes the fields after the name (kFixedHeaderBytes - 16 bytes at p).
void DecodeFixedFields(const uint8_t* p, Header& h) {
  auto i32 = [&p] {
    const auto v = static_cast<int32_t>(static_cast<uint32_t>(GetLe(p, 4)));
    p += 4;
    return v;
  };
  h.shape.c = i32(), h.shape.h = i32(), h.shape.w = i32();
  h.num_classes = i32();
  h.count = GetLe(p, 8);
  p += 8;
  h.info.rank = i32(), h.info.size = i32(), h.info.batch = i32(), h.info.batches = i32();
  h.info.seed = GetLe(p, 8);
}

// ---- files ----

// Move-only owner of a stdio FILE.
class File {
 public:
  explicit File(std::FILE* f) : f_(f) {}
  File(File&& o) noexcept : f_(std::exchange(o.f_, nullptr)) {}
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File() { Close(); }
  std::FILE* get() const { return f_; }
  // Returns false if the final flush failed.
  bool Close() {
    const bool ok = f_ == nullptr || std::fclose(f_) == 0;
    f_ = nullptr;
    return ok;
  }

 private:
  std::FILE* f_;
};

uint32_t UpdateCrc(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const Bytef*>(data);
  for (size_t done = 0; done < n;) {
    const size_t len = std::min(n - done, kChunkBytes);
    crc = static_cast<uint32_t>(crc32(crc, p + done, static_cast<uInt>(len)));
    done += len;
  }
  return crc;
}

// Sequential writer that keeps the CRC32 of everything written.
class CrcWriter {
 public:
  CrcWriter(std::FILE* f, std::string path) : f_(f), path_(std::move(path)) {}
  Status Write(const void* data, size_t n) {
    if (n > 0 && std::fwrite(data, 1, n, f_) != n) {
      return IoError("{}: write failed: {}", path_, std::strerror(errno));
    }
    crc_ = UpdateCrc(crc_, data, n);
    return Status::Ok();
  }
  // n host-order 32-bit words, little-endian on disk.
  Status WriteLe32(const void* words, size_t n) {
    if constexpr (std::endian::native == std::endian::little) return Write(words, 4 * n);
    std::vector<uint32_t> chunk;
    for (size_t done = 0; done < n; done += chunk.size()) {
      const auto* src = static_cast<const uint32_t*>(words) + done;
      chunk.assign(src, src + std::min(n - done, kChunkBytes / 4));
      ToFromLe32(chunk.data(), chunk.size());
      P2P_RETURN_IF_ERROR(Write(chunk.data(), 4 * chunk.size()));
    }
    return Status::Ok();
  }
  uint32_t crc() const { return crc_; }

 private:
  std::FILE* f_;
  std::string path_;
  uint32_t crc_ = static_cast<uint32_t>(crc32(0, Z_NULL, 0));
};

// Sequential reader that keeps the CRC32 of everything read. The file's length was checked
// beforehand, so a short read means the file changed under us: still kDataLoss.
class CrcReader {
 public:
  CrcReader(std::FILE* f, std::string path) : f_(f), path_(std::move(path)) {}
  Status Read(void* data, size_t n) {
    if (n > 0 && std::fread(data, 1, n, f_) != n) {
      return DataLoss("{}: truncated: file ended during a {}-byte read", path_, n);
    }
    crc_ = UpdateCrc(crc_, data, n);
    return Status::Ok();
  }
  Status ReadLe32(void* words, size_t n) {
    P2P_RETURN_IF_ERROR(Read(words, 4 * n));
    ToFromLe32(static_cast<uint32_t*>(words), n);
    return Status::Ok();
  }
  uint32_t crc() const { return crc_; }

 private:
  std::FILE* f_;
  std::string path_;
  uint32_t crc_ = static_cast<uint32_t>(crc32(0, Z_NULL, 0));
};

// ---- write ----

Status ValidateForWrite(const std::string& path, const Dataset& data, const Header& h) {
  if (std::string problem = HeaderProblem(h); !problem.empty()) {
    return InvalidArgument("{}: {}", path, problem);
  }
  if (data.x.rows() != static_cast<Eigen::Index>(data.size()) ||
      (data.size() > 0 && data.x.cols() != data.shape.size())) {
    return InvalidArgument("{}: features are {}x{} for {} samples of shape {}x{}x{}", path,
                           data.x.rows(), data.x.cols(), data.size(), data.shape.c, data.shape.h,
                           data.shape.w);
  }
  for (size_t i = 0; i < data.size(); ++i) {
    if (data.y[i] < 0 || data.y[i] >= data.num_classes) {
      return InvalidArgument("{}: label {} of sample {} is outside [0, {})", path, data.y[i], i,
                             data.num_classes);
    }
  }
  return Status::Ok();
}

// A unique temporary name next to `path`, so the final rename stays on one file system.
std::string TempPath(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return fmt::format("{}.tmp.{}.{}", path, ::getpid(), counter++);
}

// Header, features, labels and CRC to an open file.
Status WriteContents(std::FILE* f, const std::string& path, const Dataset& data, const Header& h) {
  CrcWriter w(f, path);
  const std::vector<uint8_t> header = EncodeHeader(h);
  P2P_RETURN_IF_ERROR(w.Write(header.data(), header.size()));
  static_assert(sizeof(float) == 4 && sizeof(int32_t) == 4);
  // Row-major Matrix: the rows are one contiguous (count, features) block.
  P2P_RETURN_IF_ERROR(w.WriteLe32(data.x.data(), static_cast<size_t>(data.x.size())));
  P2P_RETURN_IF_ERROR(w.WriteLe32(data.y.data(), data.y.size()));
  uint32_t crc = w.crc();
  ToFromLe32(&crc, 1);
  if (std::fwrite(&crc, 1, kCrcBytes, f) != kCrcBytes || std::fflush(f) != 0 ||
      ::fsync(::fileno(f)) != 0) {
    return IoError("{}: write failed: {}", path, std::strerror(errno));
  }
  return Status::Ok();
}

// ---- read ----

// Reads and validates the header; `file_bytes` bounds every size in it.
Result<Header> ReadHeader(CrcReader& r, const std::string& path, uint64_t file_bytes) {
  if (file_bytes < kFixedHeaderBytes + kCrcBytes) {
    return DataLoss("{}: truncated: {} bytes is too short for a shard header", path, file_bytes);
  }
  uint8_t prefix[16];
  P2P_RETURN_IF_ERROR(r.Read(prefix, sizeof prefix));
  if (std::memcmp(prefix, kMagic, sizeof kMagic) != 0) {
    return DataLoss("{}: bad magic: not a P2PSHARD file", path);
  }
  if (const uint64_t version = GetLe(prefix + 8, 4); version != kShardFormatVersion) {
    return DataLoss("{}: unsupported shard format version {} (this build reads {})", path, version,
                    kShardFormatVersion);
  }
  const uint64_t name_bytes = GetLe(prefix + 12, 4);
  if (name_bytes > kMaxNameBytes || kFixedHeaderBytes + name_bytes + kCrcBytes > file_bytes) {
    return DataLoss("{}: corrupt header: dataset name of {} bytes", path, name_bytes);
  }
  Header h;
  h.dataset.resize(name_bytes);
  P2P_RETURN_IF_ERROR(r.Read(h.dataset.data(), name_bytes));
  uint8_t fixed[kFixedHeaderBytes - 16];
  P2P_RETURN_IF_ERROR(r.Read(fixed, sizeof fixed));
  DecodeFixedFields(fixed, h);
  h.info.dataset = h.dataset;
  if (std::string problem = HeaderProblem(h); !problem.empty()) {
    return DataLoss("{}: corrupt header: {}", path, problem);
  }
  const uint64_t payload = file_bytes - kFixedHeaderBytes - name_bytes - kCrcBytes;
  if (payload % RecordBytes(h.shape) != 0 || h.count != payload / RecordBytes(h.shape)) {
    return DataLoss(
        "{}: truncated or corrupt: header declares {} samples of {}x{}x{} ({} bytes each) but "
        "{} bytes of samples follow",
        path, h.count, h.shape.c, h.shape.h, h.shape.w, RecordBytes(h.shape), payload);
  }
  return h;
}

// Features, labels and the trailing CRC after a validated header.
Result<Dataset> ReadBody(CrcReader& r, std::FILE* f, const std::string& path, const Header& h) {
  Dataset data;
  data.shape = h.shape;
  data.num_classes = h.num_classes;
  data.x.resize(static_cast<Eigen::Index>(h.count), h.shape.size());
  data.y.resize(h.count);
  P2P_RETURN_IF_ERROR(r.ReadLe32(data.x.data(), static_cast<size_t>(data.x.size())));
  P2P_RETURN_IF_ERROR(r.ReadLe32(data.y.data(), data.y.size()));
  uint32_t stored = 0;
  if (std::fread(&stored, 1, kCrcBytes, f) != kCrcBytes) {
    return DataLoss("{}: truncated: the CRC32 is missing", path);
  }
  ToFromLe32(&stored, 1);
  if (stored != r.crc()) {
    return DataLoss("{}: checksum mismatch: stored CRC32 {:08x}, contents hash to {:08x}", path,
                    stored, r.crc());
  }
  for (size_t i = 0; i < data.size(); ++i) {
    if (data.y[i] < 0 || data.y[i] >= data.num_classes) {
      return DataLoss("{}: label {} of sample {} is outside [0, {})", path, data.y[i], i,
                      data.num_classes);
    }
  }
  return data;
}

// An open shard file positioned after its validated header.
struct OpenShard {
  File file;
  CrcReader reader;
  Header header;
};

Result<OpenShard> OpenAndReadHeader(const std::string& path) {
  std::error_code ec;
  const uint64_t file_bytes = std::filesystem::file_size(path, ec);
  if (ec) {
    if (!std::filesystem::exists(path)) return NotFound("{}: no such shard file", path);
    return IoError("{}: {}", path, ec.message());
  }
  File file(std::fopen(path.c_str(), "rb"));
  if (file.get() == nullptr) return IoError("{}: cannot open: {}", path, std::strerror(errno));
  CrcReader reader(file.get(), path);
  P2P_ASSIGN_OR_RETURN(Header h, ReadHeader(reader, path, file_bytes));
  return OpenShard{std::move(file), std::move(reader), std::move(h)};
}

// ---- split ----

// [begin, end) of batch b when n samples are cut into `batches` near-equal contiguous slices.
std::pair<size_t, size_t> BatchRange(size_t n, int batches, int b) {
  const size_t base = n / batches, extra = n % batches;
  const size_t begin = b * base + std::min<size_t>(b, extra);
  return {begin, begin + base + (static_cast<size_t>(b) < extra)};
}

Status WriteBatches(const Dataset& shard, ShardInfo info, const std::string& out_dir) {
  std::error_code ec;
  const std::string dir =
      std::filesystem::path(BatchShardPath(out_dir, info.rank, 0)).parent_path();
  if (!std::filesystem::create_directories(dir, ec) && ec) {
    return IoError("{}: cannot create directory: {}", dir, ec.message());
  }
  for (int b = 0; b < info.batches; ++b) {
    const auto [begin, end] = BatchRange(shard.size(), info.batches, b);
    std::vector<size_t> rows(end - begin);
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = begin + i;
    info.batch = b;
    P2P_RETURN_IF_ERROR(
        WriteShardFile(BatchShardPath(out_dir, info.rank, b), shard.Subset(rows), info));
  }
  return Status::Ok();
}

}  // namespace

Status WriteShardFile(const std::string& path, const Dataset& data, const ShardInfo& info) {
  if (data.byte_backed()) return WriteShardFile(path, data.AsFloat(), info);  // float32 on disk
  const Header h{info.dataset, data.shape, data.num_classes, data.size(), info};
  P2P_RETURN_IF_ERROR(ValidateForWrite(path, data, h));
  const std::string tmp = TempPath(path);
  File file(std::fopen(tmp.c_str(), "wb"));
  if (file.get() == nullptr) return IoError("{}: cannot create: {}", tmp, std::strerror(errno));
  Status s = WriteContents(file.get(), tmp, data, h);
  if (s.ok() && !file.Close()) s = IoError("{}: close failed: {}", tmp, std::strerror(errno));
  std::error_code ec;
  if (s.ok()) std::filesystem::rename(tmp, path, ec);
  if (s.ok() && ec) s = IoError("{}: cannot rename to {}: {}", tmp, path, ec.message());
  if (!s.ok()) {
    file.Close();
    std::filesystem::remove(tmp, ec);
  }
  return s;
}

Result<ShardFile> ReadShardFile(const std::string& path) {
  P2P_ASSIGN_OR_RETURN(OpenShard shard, OpenAndReadHeader(path));
  CrcReader& reader = shard.reader;
  P2P_ASSIGN_OR_RETURN(Dataset data, ReadBody(reader, shard.file.get(), path, shard.header));
  return ShardFile{shard.header.info, std::move(data)};
}

Result<ShardInfo> ReadShardInfo(const std::string& path) {
  P2P_ASSIGN_OR_RETURN(OpenShard shard, OpenAndReadHeader(path));
  return shard.header.info;
}

std::string ShardPath(const std::string& out_dir, int rank) {
  return (std::filesystem::path(out_dir) / fmt::format("rank-{}.shard", rank)).string();
}

std::string BatchShardPath(const std::string& out_dir, int rank, int batch) {
  return (std::filesystem::path(out_dir) / fmt::format("rank-{}", rank) /
          fmt::format("batch-{}.shard", batch))
      .string();
}

Status WriteSplit(const Dataset& train, const SplitOptions& options, const std::string& out_dir) {
  if (options.batches < 0) return InvalidArgument("split: batches must be >= 0");
  std::vector<std::vector<size_t>> shards;
  for (int r = 0; r < std::max(options.size, 1); ++r) {
    P2P_ASSIGN_OR_RETURN(std::vector<size_t> indices, ShardIndices(train.size(), options.size, r,
                                                                   options.seed, options.weights));
    if (indices.size() < static_cast<size_t>(options.batches)) {
      return InvalidArgument("split: rank {} has {} samples, fewer than {} batches", r,
                             indices.size(), options.batches);
    }
    shards.push_back(std::move(indices));
  }
  std::error_code ec;
  if (!std::filesystem::create_directories(out_dir, ec) && ec) {
    return IoError("{}: cannot create directory: {}", out_dir, ec.message());
  }
  for (int r = 0; r < options.size; ++r) {
    const ShardInfo info{options.dataset, r, options.size, -1, options.batches, options.seed};
    const Dataset shard = train.Subset(shards[r]);
    P2P_RETURN_IF_ERROR(WriteShardFile(ShardPath(out_dir, r), shard, info));
    if (options.batches > 0) P2P_RETURN_IF_ERROR(WriteBatches(shard, info, out_dir));
  }
  return Status::Ok();
}

}  // namespace p2p::ml
