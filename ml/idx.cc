// IDX files (the MNIST family's format) and whole-file reads, plain or gzip, through zlib.
//
// IDX: a 4-byte big-endian magic 0x0000TTDD (TT = 0x08 unsigned byte, DD = number of dims), DD
// big-endian uint32 dims, then the product of the dims in bytes, nothing after. gzread reads plain
// files transparently, so one code path serves both. Every size from a header is bounded before it
// drives an allocation, and buffers grow only as data actually arrives.
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "ml/dataset.h"
#include "ml/dataset_internal.h"

namespace p2p::ml {
namespace {

constexpr uint32_t kIdxImagesMagic = 0x00000803;  // uint8, 3 dims
constexpr uint32_t kIdxLabelsMagic = 0x00000801;  // uint8, 1 dim
constexpr uint64_t kMaxIdxCount = uint64_t{1} << 28;
constexpr uint64_t kMaxIdxSide = uint64_t{1} << 14;
constexpr size_t kChunk = size_t{1} << 22;        // bytes per gzread call
constexpr size_t kMaxReserve = size_t{64} << 20;  // never reserve more on a header's word

// Move-only owner of a zlib gzFile.
class GzFile {
 public:
  explicit GzFile(gzFile f) : f_(f) {}
  GzFile(GzFile&& o) noexcept : f_(std::exchange(o.f_, nullptr)) {}
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;
  ~GzFile() {
    if (f_ != nullptr) gzclose(f_);
  }
  gzFile get() const { return f_; }

 private:
  gzFile f_;
};

Result<GzFile> OpenGz(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return NotFound("{}: no such file", path);
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return IoError("{}: cannot open: {}", path, std::strerror(errno));
  gzbuffer(f, 1 << 17);
  return GzFile(f);
}

// Reads up to n bytes; returns how many arrived before end of file. A damaged gzip stream
// (truncated, bad CRC, not deflate) is kDataLoss even when zlib reports it as a short read.
Result<size_t> ReadUpTo(const GzFile& file, const std::string& path, uint8_t* dst, size_t n) {
  size_t got = 0;
  while (got < n) {
    const unsigned want = static_cast<unsigned>(std::min(n - got, kChunk));
    const int r = gzread(file.get(), dst + got, want);
    if (r > 0) got += static_cast<size_t>(r);
    if (r < 0 || static_cast<unsigned>(r) < want) break;
  }
  int errnum = Z_OK;
  const char* msg = gzerror(file.get(), &errnum);
  if (errnum == Z_ERRNO) return IoError("{}: read failed: {}", path, std::strerror(errno));
  if (errnum != Z_OK) {
    return DataLoss("{}: corrupt or truncated gzip stream ({}) after {} bytes", path, msg, got);
  }
  return got;
}

// Appends up to n bytes to `out`, growing it chunk by chunk; returns how many arrived.
Result<size_t> AppendUpTo(const GzFile& file, const std::string& path, size_t n,
                          std::vector<uint8_t>& out) {
  out.reserve(out.size() + std::min(n, kMaxReserve));
  size_t got = 0;
  while (got < n) {
    const size_t want = std::min(n - got, kChunk);
    const size_t old = out.size();
    out.resize(old + want);
    P2P_ASSIGN_OR_RETURN(size_t r, ReadUpTo(file, path, out.data() + old, want));
    out.resize(old + r);
    got += r;
    if (r < want) break;
  }
  return got;
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Reads the magic and `num_dims` dims; kDataLoss if the file is shorter or the magic differs.
Result<std::vector<uint64_t>> ReadIdxHeader(const GzFile& file, const std::string& path,
                                            uint32_t magic, int num_dims, const char* what) {
  uint8_t header[16];
  const size_t header_bytes = 4 + 4 * static_cast<size_t>(num_dims);
  P2P_ASSIGN_OR_RETURN(size_t got, ReadUpTo(file, path, header, header_bytes));
  if (got < 4) return DataLoss("{}: truncated: {} bytes, not even an IDX magic", path, got);
  const uint32_t found = BigEndian32(header);
  if (found != magic) {
    return DataLoss("{}: bad magic 0x{:08x} (expected 0x{:08x}, IDX {})", path, found, magic, what);
  }
  if (got < header_bytes) {
    return DataLoss("{}: truncated header: {} of {} bytes", path, got, header_bytes);
  }
  std::vector<uint64_t> dims(num_dims);
  for (int i = 0; i < num_dims; ++i) dims[i] = BigEndian32(header + 4 + 4 * i);
  return dims;
}

// Reads exactly `bytes` payload bytes and checks that nothing follows them. `declared` describes
// the header for messages ("60000 images of 28x28").
Result<std::vector<uint8_t>> ReadIdxPayload(const GzFile& file, const std::string& path,
                                            uint64_t bytes, const std::string& declared,
                                            const char* unit) {
  std::vector<uint8_t> data;
  P2P_ASSIGN_OR_RETURN(size_t got, AppendUpTo(file, path, bytes, data));
  if (got < bytes) {
    return DataLoss(
        "{}: truncated: header declares {} but only {} bytes of {} follow (expected {})", path,
        declared, got, unit, bytes);
  }
  uint8_t extra = 0;
  P2P_ASSIGN_OR_RETURN(size_t trailing, ReadUpTo(file, path, &extra, 1));
  if (trailing != 0) {
    return DataLoss("{}: trailing data: header declares {} ({} bytes) but more follow", path,
                    declared, bytes);
  }
  return data;
}

// Reads the payload of an images file whose header `h` is checked, in blocks of whole images,
// and checks that nothing follows it. Blocks grow only as data arrives.
Status StreamIdxPayload(const GzFile& file, const std::string& path,
                        const internal::IdxImagesHeader& h, const internal::ImageBlockFn& sink) {
  const std::string declared = fmt::format("{} images of {}x{}", h.count, h.rows, h.cols);
  const uint64_t image_bytes = static_cast<uint64_t>(h.rows) * static_cast<uint64_t>(h.cols);
  const uint64_t per_block = std::max<uint64_t>(1, kChunk / image_bytes);
  std::vector<uint8_t> block;
  for (uint64_t first = 0; first < h.count;) {
    const uint64_t n = std::min(per_block, h.count - first);
    block.clear();
    P2P_ASSIGN_OR_RETURN(size_t got, AppendUpTo(file, path, n * image_bytes, block));
    if (got < n * image_bytes) {
      return DataLoss(
          "{}: truncated: header declares {} but only {} bytes of pixels follow (expected {})",
          path, declared, first * image_bytes + got, h.count * image_bytes);
    }
    sink(block.data(), first, n);
    first += n;
  }
  uint8_t extra = 0;
  P2P_ASSIGN_OR_RETURN(size_t trailing, ReadUpTo(file, path, &extra, 1));
  if (trailing != 0) {
    return DataLoss("{}: trailing data: header declares {} ({} bytes) but more follow", path,
                    declared, h.count * image_bytes);
  }
  return Status::Ok();
}

}  // namespace

namespace internal {

Status StreamIdxImages(const std::string& path, const IdxHeaderFn& on_header,
                       const ImageBlockFn& sink) {
  P2P_ASSIGN_OR_RETURN(GzFile file, OpenGz(path));
  P2P_ASSIGN_OR_RETURN(std::vector<uint64_t> dims,
                       ReadIdxHeader(file, path, kIdxImagesMagic, 3, "images"));
  const uint64_t count = dims[0], rows = dims[1], cols = dims[2];
  if (count > kMaxIdxCount || rows == 0 || cols == 0 || rows > kMaxIdxSide || cols > kMaxIdxSide) {
    return DataLoss("{}: implausible header: {} images of {}x{}", path, count, rows, cols);
  }
  const IdxImagesHeader h{static_cast<size_t>(count), static_cast<int>(rows),
                          static_cast<int>(cols)};
  P2P_RETURN_IF_ERROR(on_header(h));
  return StreamIdxPayload(file, path, h, sink);
}

}  // namespace internal

Result<IdxImages> ReadIdxImages(const std::string& path) {
  IdxImages out;
  size_t image_bytes = 0;
  auto on_header = [&](const internal::IdxImagesHeader& h) {
    out.count = h.count;
    out.rows = h.rows;
    out.cols = h.cols;
    image_bytes = static_cast<size_t>(h.rows) * static_cast<size_t>(h.cols);
    out.pixels.reserve(std::min(h.count * image_bytes, kMaxReserve));
    return Status::Ok();
  };
  // Appending block by block: the buffer grows as data arrives, never on the header's word.
  auto sink = [&](const uint8_t* images, size_t, size_t n) {
    out.pixels.insert(out.pixels.end(), images, images + n * image_bytes);
  };
  P2P_RETURN_IF_ERROR(internal::StreamIdxImages(path, on_header, sink));
  return out;
}

Result<std::vector<uint8_t>> ReadIdxLabels(const std::string& path) {
  P2P_ASSIGN_OR_RETURN(GzFile file, OpenGz(path));
  P2P_ASSIGN_OR_RETURN(std::vector<uint64_t> dims,
                       ReadIdxHeader(file, path, kIdxLabelsMagic, 1, "labels"));
  const std::string declared = fmt::format("{} labels", dims[0]);
  if (dims[0] > kMaxIdxCount) return DataLoss("{}: implausible header: {}", path, declared);
  return ReadIdxPayload(file, path, dims[0], declared, "labels");
}

namespace internal {

Result<std::vector<uint8_t>> ReadWholeFile(const std::string& path, size_t max_bytes) {
  P2P_ASSIGN_OR_RETURN(GzFile file, OpenGz(path));
  std::vector<uint8_t> data;
  P2P_ASSIGN_OR_RETURN(size_t got, AppendUpTo(file, path, max_bytes, data));
  uint8_t extra = 0;
  P2P_ASSIGN_OR_RETURN(size_t more, ReadUpTo(file, path, &extra, 1));
  if (more != 0) return DataLoss("{}: larger than the {} bytes allowed", path, max_bytes);
  data.resize(got);
  return data;
}

}  // namespace internal
}  // namespace p2p::ml
