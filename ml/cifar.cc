// CIFAR-10, binary version: data_batch_1..5.bin (training) and test_batch.bin, each a sequence of
// 3073-byte records: 1 label byte, then 1024 red, 1024 green and 1024 blue bytes (32x32,
// row-major). That is already our channel-major (3, 32, 32) sample layout.
//
// Records carry no count up front, so loading reads the files twice: once for the labels (which
// fixes the split and the selection), once keeping only the selected records' bytes.
#include <filesystem>
#include <span>

#include "ml/dataset.h"
#include "ml/dataset_internal.h"

namespace p2p::ml::internal {
namespace {

constexpr int kClasses = 10;
constexpr Shape kCifarShape{3, 32, 32};
constexpr size_t kRecordBytes = 1 + 3 * 32 * 32;
constexpr size_t kMaxRecordsPerFile = 100000;  // the real batches hold 10000
constexpr const char* kTrainFiles[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                       "data_batch_4.bin", "data_batch_5.bin"};
constexpr const char* kTestFile = "test_batch.bin";

// The archive unpacks into cifar-10-batches-bin/; accept either that folder or its parent.
std::filesystem::path BatchDir(const std::string& dir) {
  const std::filesystem::path nested = std::filesystem::path(dir) / "cifar-10-batches-bin";
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::path(dir) / kTestFile, ec) &&
      std::filesystem::is_directory(nested, ec)) {
    return nested;
  }
  return dir;
}

// One batch file read whole (at most kMaxRecordsPerFile records) and checked: a whole, non-zero
// number of records with labels in range.
Result<std::vector<uint8_t>> ReadBatch(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return NotFound(
        "cifar10: {} not found; pass --data-dir with the CIFAR-10 binary version "
        "(data_batch_1.bin .. data_batch_5.bin, test_batch.bin)",
        path.string());
  }
  P2P_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes,
                       ReadWholeFile(path.string(), kRecordBytes * kMaxRecordsPerFile));
  if (bytes.empty() || bytes.size() % kRecordBytes != 0) {
    return DataLoss("{}: {} bytes is not a whole, non-zero number of {}-byte CIFAR-10 records",
                    path.string(), bytes.size(), kRecordBytes);
  }
  const size_t records = bytes.size() / kRecordBytes;
  std::vector<uint8_t> labels(records);
  for (size_t i = 0; i < records; ++i) labels[i] = bytes[i * kRecordBytes];
  P2P_RETURN_IF_ERROR(ValidateLabels(labels, kClasses, path.string()));
  return bytes;
}

// The labels of a set of batch files, in order (the first pass: only labels are kept).
Result<std::vector<uint8_t>> ReadLabels(std::span<const std::filesystem::path> files) {
  std::vector<uint8_t> labels;
  for (const auto& path : files) {
    P2P_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadBatch(path));
    for (size_t i = 0; i < bytes.size(); i += kRecordBytes) labels.push_back(bytes[i]);
  }
  return labels;
}

// The second pass: reads the files again, one at a time, and offers every record to `router`.
// kDataLoss if a file no longer holds the records the first pass counted.
Status RouteRecords(std::span<const std::filesystem::path> files, std::span<const uint8_t> labels,
                    RowRouter& router) {
  size_t row = 0;
  for (const auto& path : files) {
    P2P_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadBatch(path));
    for (size_t i = 0; i < bytes.size(); i += kRecordBytes, ++row) {
      if (row >= labels.size() || bytes[i] != labels[row]) {
        return DataLoss("{}: changed while it was being read; load again", path.string());
      }
      router.Offer(row, bytes.data() + i + 1);
    }
  }
  if (row != labels.size()) return DataLoss("cifar10: batch files changed while being read");
  return Status::Ok();
}

// Keeps rows[i] of `files` in *dests[i], byte-backed: only the kept records stay in memory.
Status LoadRows(std::span<const std::filesystem::path> files, std::span<const uint8_t> labels,
                const PixelStats& stats, std::span<const std::vector<size_t>> rows,
                std::span<Dataset* const> dests) {
  RowRouter router(kCifarShape, kClasses, ByteFeatures(stats, kCifarShape.c));
  for (size_t i = 0; i < dests.size(); ++i) router.Add(rows[i], labels, *dests[i]);
  return RouteRecords(files, labels, router);
}

}  // namespace

Result<Splits> LoadCifar10(const std::string& dir, const PixelStats& stats, uint64_t seed,
                           const DataSelection& selection) {
  const std::filesystem::path batches = BatchDir(dir);
  std::vector<std::filesystem::path> train_files;
  for (const char* name : kTrainFiles) train_files.push_back(batches / name);
  const std::filesystem::path test_file[] = {batches / kTestFile};
  std::vector<uint8_t> train_labels;
  if (!selection.test_only) {
    P2P_ASSIGN_OR_RETURN(train_labels, ReadLabels(train_files));
  }
  P2P_ASSIGN_OR_RETURN(std::vector<uint8_t> test_labels, ReadLabels(test_file));
  P2P_ASSIGN_OR_RETURN(SplitRows rows,
                       SelectRows(train_labels.size(), test_labels.size(), seed, selection));
  Splits out;
  out.train.shape = out.validation.shape = kCifarShape;
  Dataset* test_dest[] = {&out.test};
  P2P_RETURN_IF_ERROR(LoadRows(test_file, test_labels, stats, std::span(&rows.test, 1), test_dest));
  if (selection.test_only) return out;
  const std::vector<size_t> train_rows[] = {std::move(rows.train), std::move(rows.validation)};
  Dataset* train_dests[] = {&out.train, &out.validation};
  P2P_RETURN_IF_ERROR(LoadRows(train_files, train_labels, stats, train_rows, train_dests));
  return out;
}

}  // namespace p2p::ml::internal
