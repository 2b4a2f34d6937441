// LoadDataset: the registry of datasets, IDX datasets (MNIST, Fashion-MNIST), normalisation and
// the train/validation split shared by every image dataset.
#include "ml/dataset.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>

#include "ml/dataset_internal.h"

namespace p2p::ml {
namespace {

using internal::PixelStats;
using internal::RawImages;

struct DatasetSpec;
using LoadFn = Result<Splits> (*)(const DatasetSpec& spec, const DataOptions& options);

// One row per dataset: LoadDataset, DatasetNames and DefaultDataDir all read this table.
struct DatasetSpec {
  const char* name;
  const char* default_dir;  // "" = the user must pass --data-dir
  const char* package;      // Debian package that installs default_dir, or ""
  PixelStats stats;         // of pixel/255 over the training file
  LoadFn load;
};

Result<Splits> LoadIdxDataset(const DatasetSpec& spec, const DataOptions& options);
Result<Splits> LoadCifarDataset(const DatasetSpec& spec, const DataOptions& options);
Result<Splits> LoadSyntheticDataset(const DatasetSpec&, const DataOptions& options) {
  return internal::MakeSynthetic(options);
}

constexpr DatasetSpec kDatasets[] = {
    {"fashion-mnist",
     "/usr/share/datasets/fashion-mnist",
     "dataset-fashion-mnist",
     {{0.2860f}, {0.3530f}},
     LoadIdxDataset},
    {"mnist", "", "", {{0.1307f}, {0.3081f}}, LoadIdxDataset},
    {"cifar10",
     "",
     "",
     {{0.4914f, 0.4822f, 0.4465f}, {0.2023f, 0.1994f, 0.2010f}},
     LoadCifarDataset},
    {"synthetic", "", "", {{0.0f}, {1.0f}}, LoadSyntheticDataset},
};

const DatasetSpec* FindSpec(const std::string& name) {
  for (const DatasetSpec& spec : kDatasets) {
    if (name == spec.name) return &spec;
  }
  return nullptr;
}

// How the user can get the missing files.
std::string InstallHint(const DatasetSpec& spec) {
  if (*spec.package != '\0') {
    return fmt::format("install the Debian package {} (scripts/setup.sh) or pass --data-dir",
                       spec.package);
  }
  return fmt::format("pass --data-dir with the {} files", spec.name);
}

Result<std::string> ResolveDir(const DatasetSpec& spec, const DataOptions& options) {
  if (!options.data_dir.empty()) return options.data_dir;
  if (*spec.default_dir != '\0') return std::string(spec.default_dir);
  return InvalidArgument("{} has no default location: {}", spec.name, InstallHint(spec));
}

// dir/base.gz if present, else dir/base; kNotFound naming both and how to get them.
Result<std::string> FindIdxFile(const DatasetSpec& spec, const std::string& dir,
                                const std::string& base) {
  const std::filesystem::path plain = std::filesystem::path(dir) / base;
  const std::string gz = plain.string() + ".gz";
  std::error_code ec;
  if (std::filesystem::is_regular_file(gz, ec)) return gz;
  if (std::filesystem::is_regular_file(plain, ec)) return plain.string();
  return NotFound("{}: {} not found (nor uncompressed {}); {}", spec.name, gz, plain.string(),
                  InstallHint(spec));
}

// One IDX images file and its labels file, checked against each other and num_classes.
Result<RawImages> ReadIdxPair(const DatasetSpec& spec, const std::string& dir,
                              const std::string& prefix, int num_classes) {
  P2P_ASSIGN_OR_RETURN(std::string images_path,
                       FindIdxFile(spec, dir, prefix + "-images-idx3-ubyte"));
  P2P_ASSIGN_OR_RETURN(std::string labels_path,
                       FindIdxFile(spec, dir, prefix + "-labels-idx1-ubyte"));
  P2P_ASSIGN_OR_RETURN(IdxImages images, ReadIdxImages(images_path));
  P2P_ASSIGN_OR_RETURN(std::vector<uint8_t> labels, ReadIdxLabels(labels_path));
  if (labels.size() != images.count) {
    return DataLoss("{}: wrong label count: {} labels for the {} images of {}", labels_path,
                    labels.size(), images.count, images_path);
  }
  P2P_RETURN_IF_ERROR(internal::ValidateLabels(labels, num_classes, labels_path));
  RawImages raw;
  raw.pixels = std::move(images.pixels);
  raw.labels = std::move(labels);
  raw.shape = Shape{1, images.rows, images.cols};
  return raw;
}

Result<Splits> LoadIdxDataset(const DatasetSpec& spec, const DataOptions& options) {
  constexpr int kClasses = 10;
  P2P_ASSIGN_OR_RETURN(std::string dir, ResolveDir(spec, options));
  P2P_ASSIGN_OR_RETURN(RawImages train, ReadIdxPair(spec, dir, "train", kClasses));
  P2P_ASSIGN_OR_RETURN(RawImages test, ReadIdxPair(spec, dir, "t10k", kClasses));
  if (!(train.shape == test.shape)) {
    return DataLoss("{}: train images are {}x{} but test images are {}x{}", dir, train.shape.h,
                    train.shape.w, test.shape.h, test.shape.w);
  }
  return internal::SplitAndNormalise(train, test, spec.stats, kClasses, options.seed);
}

Result<Splits> LoadCifarDataset(const DatasetSpec& spec, const DataOptions& options) {
  P2P_ASSIGN_OR_RETURN(std::string dir, ResolveDir(spec, options));
  return internal::LoadCifar10(dir, spec.stats, options.seed);
}

}  // namespace

namespace internal {

Dataset NormaliseRows(const RawImages& raw, std::span<const size_t> rows, const PixelStats& stats,
                      int num_classes) {
  const int features = raw.shape.size();
  const int plane = raw.shape.h * raw.shape.w;
  P2P_CHECK(raw.shape.c >= 1 && raw.shape.c <= 3, "{} channels", raw.shape.c);
  // x = (p / 255 - mean) / std = p * scale + offset, per channel.
  float scale[3] = {}, offset[3] = {};
  for (int c = 0; c < raw.shape.c; ++c) {
    scale[c] = 1.0f / (255.0f * stats.std[c]);
    offset[c] = -stats.mean[c] / stats.std[c];
  }
  Dataset out;
  out.shape = raw.shape;
  out.num_classes = num_classes;
  out.x.resize(static_cast<Eigen::Index>(rows.size()), features);
  out.y.resize(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    P2P_CHECK(rows[i] < raw.count(), "row {} of {}", rows[i], raw.count());
    const uint8_t* src = raw.pixels.data() + rows[i] * features;
    float* dst = out.x.data() + i * features;
    for (int j = 0; j < features; ++j) {
      const int c = j / plane;
      dst[j] = static_cast<float>(src[j]) * scale[c] + offset[c];
    }
    out.y[i] = raw.labels[rows[i]];
  }
  return out;
}

Status ValidateLabels(std::span<const uint8_t> labels, int num_classes, const std::string& source) {
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= num_classes) {
      return DataLoss("{}: label {} of sample {} is outside [0, {})", source, labels[i], i,
                      num_classes);
    }
  }
  return Status::Ok();
}

Splits SplitAndNormalise(const RawImages& train, const RawImages& test, const PixelStats& stats,
                         int num_classes, uint64_t seed) {
  const SplitIndices split = TrainValidationSplit(train.count(), seed);
  std::vector<size_t> all_test(test.count());
  for (size_t i = 0; i < all_test.size(); ++i) all_test[i] = i;
  Splits out;
  out.train = NormaliseRows(train, split.train, stats, num_classes);
  out.validation = NormaliseRows(train, split.validation, stats, num_classes);
  out.test = NormaliseRows(test, all_test, stats, num_classes);
  return out;
}

}  // namespace internal

Dataset Dataset::Subset(std::span<const size_t> indices) const {
  Dataset out;
  out.shape = shape;
  out.num_classes = num_classes;
  out.x.resize(static_cast<Eigen::Index>(indices.size()), x.cols());
  out.y.resize(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) {
    P2P_CHECK(indices[i] < size(), "Subset index {} of {}", indices[i], size());
    out.x.row(static_cast<Eigen::Index>(i)) = x.row(static_cast<Eigen::Index>(indices[i]));
    out.y[i] = y[indices[i]];
  }
  return out;
}

std::vector<std::string> DatasetNames() {
  std::vector<std::string> names;
  for (const DatasetSpec& spec : kDatasets) names.emplace_back(spec.name);
  return names;
}

std::string DefaultDataDir(const std::string& name) {
  const DatasetSpec* spec = FindSpec(name);
  return spec == nullptr ? std::string() : std::string(spec->default_dir);
}

Result<Splits> LoadDataset(const DataOptions& options) {
  const DatasetSpec* spec = FindSpec(options.name);
  if (spec == nullptr) {
    return InvalidArgument("unknown dataset \"{}\"; choose one of: {}", options.name,
                           fmt::join(DatasetNames(), ", "));
  }
  return spec->load(*spec, options);
}

}  // namespace p2p::ml
