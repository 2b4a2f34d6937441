// What the pool tests of every backend share: a small model, a batch, its parameters published
// in a ParamStore, and the batch split into tasks.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>

#include "ml/model.h"
#include "serverless_offload/param_store.h"
#include "serverless_offload/pool.h"
#include "tests/support/subprocess.h"

namespace p2p::offload {

inline std::string FunctionBin() {
  return (std::filesystem::path(test::P2ptrainBin()).parent_path() / "p2ptrain-function").string();
}

inline ml::ModelOptions Mlp() {
  ml::ModelOptions m;
  m.name = "mlp";
  m.hidden = {16};
  m.input = {1, 1, 12};
  m.num_classes = 3;
  return m;
}

struct Fixture {
  std::unique_ptr<ml::Model> model;
  ml::Matrix x;
  std::vector<int32_t> y;
  ParamStore store;
  ParamStore::Version version;

  ml::ModelOptions options;

  static Fixture Make(int rows, const ml::ModelOptions& options = Mlp()) {
    auto model = ml::Model::Create(options);
    EXPECT_TRUE(model.ok());
    (*model)->Init(5);
    ml::Matrix x = ml::Matrix::Random(rows, options.input.size());
    std::vector<int32_t> y(rows);
    for (int i = 0; i < rows; ++i) y[i] = i % 3;
    auto store = ParamStore::Create();
    EXPECT_TRUE(store.ok());
    auto version = store->Publish((*model)->Params());
    EXPECT_TRUE(version.ok());
    return {std::move(*model), std::move(x), std::move(y), std::move(*store), *version, options};
  }

  // The in-process gradient of the whole batch.
  std::vector<float> LocalGradient() const {
    model->ComputeGradient(x, y);
    return {model->Grads().begin(), model->Grads().end()};
  }

  // The batch split into k contiguous parts, one task each.
  std::vector<Task> Tasks(int k) const {
    std::vector<Task> tasks;
    const int n = static_cast<int>(y.size());
    for (int i = 0; i < k; ++i) {
      const int b = n * i / k, e = n * (i + 1) / k;
      Task t;
      t.id = static_cast<uint64_t>(i + 1);
      t.model = options;
      t.params_path = version.path;
      t.params_version = version.version;
      t.num_params = model->NumParams();
      t.x = x.middleRows(b, e - b);
      t.y.assign(y.begin() + b, y.begin() + e);
      tasks.push_back(std::move(t));
    }
    return tasks;
  }
};

// The sample-weighted mean of `results` equals `local` up to summation order.
inline void ExpectMeanEquals(const std::vector<TaskResult>& results,
                             const std::vector<uint64_t>& expected,
                             const std::vector<float>& local) {
  std::vector<float> grad(local.size());
  ASSERT_TRUE(WeightedMean(results, expected, grad).ok());
  for (size_t i = 0; i < grad.size(); ++i) {
    // Only the summation order differs from the in-process mean.
    ASSERT_NEAR(grad[i], local[i], 1e-6f + 1e-5f * std::abs(local[i])) << "coordinate " << i;
  }
}

}  // namespace p2p::offload
