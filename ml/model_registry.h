// Internal to ml/: the one table of named architectures behind Model::Create and Model::Names.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "ml/layer.h"
#include "ml/model.h"

namespace p2p::ml {

using Layers = std::vector<std::unique_ptr<Layer>>;

struct ModelEntry {
  const char* name;
  const char* description;
  // Builds the layers for `options` (input shape, classes, hidden, dropout, loss);
  // kInvalidArgument when the input is too small for the architecture or a width is not positive.
  Result<Layers> (*build)(const ModelOptions& options);
};

std::span<const ModelEntry> ModelRegistry();

}  // namespace p2p::ml
