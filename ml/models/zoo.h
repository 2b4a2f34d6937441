// Builders of the studies' torchvision-style models (internal to ml/; see docs/models.md).
#pragma once

#include "common/status.h"
#include "ml/layers/graph.h"
#include "ml/model.h"

namespace p2p::ml {

Result<Layers> BuildCnnBn(const ModelOptions& o);
Result<Layers> BuildVgg11(const ModelOptions& o);
Result<Layers> BuildVgg11Bn(const ModelOptions& o);
Result<Layers> BuildSqueezenet11(const ModelOptions& o);
Result<Layers> BuildResnet18(const ModelOptions& o);
Result<Layers> BuildMobilenetV1Cifar(const ModelOptions& o);
Result<Layers> BuildMobilenetV2(const ModelOptions& o);
Result<Layers> BuildMobilenetV3Small(const ModelOptions& o);

}  // namespace p2p::ml
