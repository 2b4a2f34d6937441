// LoadDataset: the registry of datasets, IDX datasets (MNIST, Fashion-MNIST), byte-backed datasets
// and their normalisation, and the selection of rows shared by every dataset.
#include "ml/dataset.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include "ml/dataset_internal.h"

namespace p2p::ml {
namespace {

using internal::PixelStats;
using internal::RowRouter;

struct DatasetSpec;
using LoadFn = Result<Splits> (*)(const DatasetSpec& spec, const DataOptions& options,
                                  const DataSelection& selection);

// One row per dataset: LoadDataset, DatasetNames and DefaultDataDir all read this table.
struct DatasetSpec {
  const char* name;
  const char* default_dir;  // "" = the user must pass --data-dir
  const char* package;      // Debian package that installs default_dir, or ""
  PixelStats stats;         // of pixel/255 over the training file
  LoadFn load;
};

Result<Splits> LoadIdxDataset(const DatasetSpec& spec, const DataOptions& options,
                              const DataSelection& selection);
Result<Splits> LoadCifarDataset(const DatasetSpec& spec, const DataOptions& options,
                                const DataSelection& selection);
Result<Splits> LoadSyntheticDataset(const DatasetSpec&, const DataOptions& options,
                                    const DataSelection& selection) {
  return internal::MakeSynthetic(options, selection);
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

// The two files of one IDX split ("train" or "t10k") and its labels, read and checked.
struct IdxPair {
  std::string images_path, labels_path;
  std::vector<uint8_t> labels;
};

Result<IdxPair> OpenIdxPair(const DatasetSpec& spec, const std::string& dir,
                            const std::string& prefix, int num_classes) {
  IdxPair pair;
  P2P_ASSIGN_OR_RETURN(pair.images_path, FindIdxFile(spec, dir, prefix + "-images-idx3-ubyte"));
  P2P_ASSIGN_OR_RETURN(pair.labels_path, FindIdxFile(spec, dir, prefix + "-labels-idx1-ubyte"));
  P2P_ASSIGN_OR_RETURN(pair.labels, ReadIdxLabels(pair.labels_path));
  P2P_RETURN_IF_ERROR(internal::ValidateLabels(pair.labels, num_classes, pair.labels_path));
  return pair;
}

// Streams `pair`'s images once, keeping file rows rows[i] (in that order) in *dests[i]; returns
// the images' shape.
Result<Shape> ReadIdxRows(const IdxPair& pair, const PixelStats& stats, int num_classes,
                          std::span<const std::vector<size_t>> rows,
                          std::span<Dataset* const> dests) {
  std::optional<RowRouter> router;
  Shape shape;
  auto on_header = [&](const internal::IdxImagesHeader& h) -> Status {
    if (pair.labels.size() != h.count) {
      return DataLoss("{}: wrong label count: {} labels for the {} images of {}", pair.labels_path,
                      pair.labels.size(), h.count, pair.images_path);
    }
    shape = Shape{1, h.rows, h.cols};
    router.emplace(shape, num_classes, internal::ByteFeatures(stats, 1));
    for (size_t i = 0; i < dests.size(); ++i) router->Add(rows[i], pair.labels, *dests[i]);
    return Status::Ok();
  };
  auto sink = [&](const uint8_t* images, size_t first, size_t n) {
    const auto bytes = static_cast<size_t>(shape.size());
    for (size_t i = 0; i < n; ++i) router->Offer(first + i, images + i * bytes);
  };
  P2P_RETURN_IF_ERROR(internal::StreamIdxImages(pair.images_path, on_header, sink));
  return shape;
}

Result<Splits> LoadIdxDataset(const DatasetSpec& spec, const DataOptions& options,
                              const DataSelection& selection) {
  constexpr int kClasses = 10;
  P2P_ASSIGN_OR_RETURN(std::string dir, ResolveDir(spec, options));
  // Every file is found and every label checked before the large image files are read.
  std::optional<IdxPair> train;
  if (!selection.test_only) {
    P2P_ASSIGN_OR_RETURN(train, OpenIdxPair(spec, dir, "train", kClasses));
  }
  P2P_ASSIGN_OR_RETURN(IdxPair test, OpenIdxPair(spec, dir, "t10k", kClasses));
  const size_t n_train = train ? train->labels.size() : 0;
  P2P_ASSIGN_OR_RETURN(internal::SplitRows rows,
                       internal::SelectRows(n_train, test.labels.size(), options.seed, selection));
  Splits out;
  Dataset* test_dest[] = {&out.test};
  P2P_ASSIGN_OR_RETURN(const Shape test_shape, ReadIdxRows(test, spec.stats, kClasses,
                                                           std::span(&rows.test, 1), test_dest));
  out.train.shape = out.validation.shape = test_shape;
  if (!train) return out;
  const std::vector<size_t> train_rows[] = {std::move(rows.train), std::move(rows.validation)};
  Dataset* train_dests[] = {&out.train, &out.validation};
  P2P_ASSIGN_OR_RETURN(const Shape train_shape,
                       ReadIdxRows(*train, spec.stats, kClasses, train_rows, train_dests));
  if (!(train_shape == test_shape)) {
    return DataLoss("{}: train images are {}x{} but test images are {}x{}", dir, train_shape.h,
                    train_shape.w, test_shape.h, test_shape.w);
  }
  return out;
}

Result<Splits> LoadCifarDataset(const DatasetSpec& spec, const DataOptions& options,
                                const DataSelection& selection) {
  P2P_ASSIGN_OR_RETURN(std::string dir, ResolveDir(spec, options));
  return internal::LoadCifar10(dir, spec.stats, options.seed, selection);
}

// Contiguous slice `rank` of `size` of `rows` (all of them without evaluation_slice): together the
// peers cover each row once.
std::vector<size_t> EvaluationSlice(std::span<const size_t> rows, const DataSelection& s) {
  const size_t n = rows.size(), size = static_cast<size_t>(s.size);
  const size_t r = static_cast<size_t>(s.rank);
  if (!s.evaluation_slice) return {rows.begin(), rows.end()};
  return {rows.begin() + static_cast<ptrdiff_t>(n * r / size),
          rows.begin() + static_cast<ptrdiff_t>(n * (r + 1) / size)};
}

// Row `row` of a byte-backed dataset as float features at `dst`: each channel through its table.
void BytesToFeatures(const Dataset& d, size_t row, float* dst) {
  const auto features = static_cast<size_t>(d.shape.size());
  const auto plane = static_cast<size_t>(d.shape.h) * static_cast<size_t>(d.shape.w);
  P2P_CHECK(d.byte_features.size() == 256 * static_cast<size_t>(d.shape.c),
            "{} byte_features for {} channels", d.byte_features.size(), d.shape.c);
  const uint8_t* src = d.pixels.data() + row * features;
  for (size_t c = 0; c * plane < features; ++c) {
    const float* table = d.byte_features.data() + 256 * c;
    for (size_t j = c * plane; j < (c + 1) * plane; ++j) dst[j] = table[src[j]];
  }
}

}  // namespace

namespace internal {

std::vector<float> ByteFeatures(const PixelStats& stats, int channels) {
  P2P_CHECK(channels >= 1 && channels <= 3, "{} channels", channels);
  std::vector<float> table(256 * static_cast<size_t>(channels));
  for (int c = 0; c < channels; ++c) {
    // The expression normalisation has always used, so features keep their exact bits.
    const float scale = 1.0f / (255.0f * stats.std[c]);
    const float offset = -stats.mean[c] / stats.std[c];
    for (int p = 0; p < 256; ++p) table[256 * c + p] = static_cast<float>(p) * scale + offset;
  }
  return table;
}

Result<SplitRows> SelectRows(size_t n_train, size_t n_test, uint64_t seed,
                             const DataSelection& selection) {
  if (selection.size < 1 || selection.rank < 0 || selection.rank >= selection.size) {
    return InvalidArgument("data selection: rank {} of size {} is not a peer", selection.rank,
                           selection.size);
  }
  SplitRows out;
  if (!selection.test_only) {
    SplitIndices split = TrainValidationSplit(n_train, seed);
    if (selection.size > 1) {
      P2P_ASSIGN_OR_RETURN(std::vector<size_t> shard,
                           ShardIndices(split.train.size(), selection.size, selection.rank, seed,
                                        selection.weights));
      for (size_t& i : shard) i = split.train[i];
      out.train = std::move(shard);
    } else {
      out.train = std::move(split.train);
    }
    out.validation = EvaluationSlice(split.validation, selection);
  }
  std::vector<size_t> all_test(n_test);
  for (size_t i = 0; i < n_test; ++i) all_test[i] = i;
  out.test = EvaluationSlice(all_test, selection);
  return out;
}

void RowRouter::Add(std::span<const size_t> rows, std::span<const uint8_t> labels, Dataset& dest) {
  P2P_CHECK(!sorted_, "RowRouter::Add after Offer");
  const auto features = static_cast<size_t>(shape_.size());
  dest = Dataset{};
  dest.shape = shape_;
  dest.num_classes = num_classes_;
  dest.byte_features = byte_features_;
  dest.pixels.resize(rows.size() * features);
  dest.y.resize(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    P2P_CHECK(rows[i] < labels.size(), "row {} of {}", rows[i], labels.size());
    dest.y[i] = labels[rows[i]];
    targets_.push_back({rows[i], dest.pixels.data() + i * features});
  }
}

void RowRouter::Offer(size_t row, const uint8_t* pixels) {
  if (!sorted_) {
    std::sort(targets_.begin(), targets_.end(),
              [](const Target& a, const Target& b) { return a.row < b.row; });
    sorted_ = true;
  }
  const auto features = static_cast<size_t>(shape_.size());
  for (; next_ < targets_.size() && targets_[next_].row == row; ++next_) {
    std::copy(pixels, pixels + features, targets_[next_].dst);
  }
  P2P_CHECK(next_ == targets_.size() || targets_[next_].row > row, "rows offered out of order");
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

}  // namespace internal

void Dataset::GatherRows(std::span<const size_t> rows, Matrix& out) const {
  const Eigen::Index features = shape.size();
  out.resize(static_cast<Eigen::Index>(rows.size()), features);
  for (size_t i = 0; i < rows.size(); ++i) {
    P2P_CHECK(rows[i] < size(), "row {} of {}", rows[i], size());
    if (byte_backed()) {
      BytesToFeatures(*this, rows[i], out.data() + i * static_cast<size_t>(features));
    } else {
      out.row(static_cast<Eigen::Index>(i)) = x.row(static_cast<Eigen::Index>(rows[i]));
    }
  }
}

void Dataset::RowRange(size_t begin, size_t n, Matrix& out) const {
  P2P_CHECK(begin <= size() && n <= size() - begin, "rows [{}, +{}) of {}", begin, n, size());
  if (!byte_backed()) {
    out = x.middleRows(static_cast<Eigen::Index>(begin), static_cast<Eigen::Index>(n));
    return;
  }
  const auto features = static_cast<size_t>(shape.size());
  out.resize(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(features));
  for (size_t i = 0; i < n; ++i) BytesToFeatures(*this, begin + i, out.data() + i * features);
}

Matrix Dataset::Features() const {
  Matrix out;
  RowRange(0, size(), out);
  return out;
}

Dataset Dataset::AsFloat() const {
  Dataset out;
  out.x = Features();
  out.y = y;
  out.shape = shape;
  out.num_classes = num_classes;
  return out;
}

Dataset Dataset::Subset(std::span<const size_t> indices) const {
  Dataset out;
  out.shape = shape;
  out.num_classes = num_classes;
  out.byte_features = byte_features;
  out.y.resize(indices.size());
  const auto features = static_cast<size_t>(shape.size());
  if (byte_backed()) {
    out.pixels.resize(indices.size() * features);
  } else {
    out.x.resize(static_cast<Eigen::Index>(indices.size()), x.cols());
  }
  for (size_t i = 0; i < indices.size(); ++i) {
    P2P_CHECK(indices[i] < size(), "Subset index {} of {}", indices[i], size());
    if (byte_backed()) {
      const uint8_t* src = pixels.data() + indices[i] * features;
      std::copy(src, src + features, out.pixels.data() + i * features);
    } else {
      out.x.row(static_cast<Eigen::Index>(i)) = x.row(static_cast<Eigen::Index>(indices[i]));
    }
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

Result<Splits> LoadDataset(const DataOptions& options, const DataSelection& selection) {
  const DatasetSpec* spec = FindSpec(options.name);
  if (spec == nullptr) {
    return InvalidArgument("unknown dataset \"{}\"; choose one of: {}", options.name,
                           fmt::join(DatasetNames(), ", "));
  }
  return spec->load(*spec, options, selection);
}

}  // namespace p2p::ml
