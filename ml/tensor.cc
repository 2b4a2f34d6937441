#include "ml/tensor.h"

#include <fmt/format.h>

namespace p2p::ml {

std::string Shape::ToString() const {
  if (h == 1 && w == 1) return fmt::format("{}", c);
  return fmt::format("{}x{}x{}", c, h, w);
}

}  // namespace p2p::ml
