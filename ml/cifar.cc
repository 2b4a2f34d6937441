// CIFAR-10, binary version: data_batch_1..5.bin (training) and test_batch.bin, each a sequence of
// 3073-byte records: 1 label byte, then 1024 red, 1024 green and 1024 blue bytes (32x32,
// row-major). That is already our channel-major (3, 32, 32) sample layout.
#include <filesystem>

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

// Appends the records of one batch file to `raw`.
Status AppendBatch(const std::filesystem::path& path, RawImages& raw) {
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
  raw.pixels.reserve(raw.pixels.size() + records * (kRecordBytes - 1));
  for (size_t i = 0; i < records; ++i) {
    const uint8_t* record = bytes.data() + i * kRecordBytes;
    raw.pixels.insert(raw.pixels.end(), record + 1, record + kRecordBytes);
  }
  raw.labels.insert(raw.labels.end(), labels.begin(), labels.end());
  return Status::Ok();
}

}  // namespace

Result<Splits> LoadCifar10(const std::string& dir, const PixelStats& stats, uint64_t seed) {
  const std::filesystem::path batches = BatchDir(dir);
  RawImages train, test;
  train.shape = test.shape = kCifarShape;
  for (const char* name : kTrainFiles) P2P_RETURN_IF_ERROR(AppendBatch(batches / name, train));
  P2P_RETURN_IF_ERROR(AppendBatch(batches / kTestFile, test));
  return SplitAndNormalise(train, test, stats, kClasses, seed);
}

}  // namespace p2p::ml::internal
