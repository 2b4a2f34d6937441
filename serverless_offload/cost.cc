#include "serverless_offload/cost.h"

#include <fmt/ranges.h>

#include <fstream>
#include <nlohmann/json.hpp>

namespace p2p::offload {

Result<PriceTable> PriceTable::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return IoError("cannot read the price table {}", path);
  const auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return InvalidArgument("price table {} is not a JSON object", path);
  PriceTable t;
  try {
    t.lambda_per_gb_second = j.value("lambda_per_gb_second", t.lambda_per_gb_second);
    t.lambda_per_million_requests =
        j.value("lambda_per_million_requests", t.lambda_per_million_requests);
    if (j.contains("instance_per_hour")) {
      for (const auto& [type, price] : j.at("instance_per_hour").items()) {
        t.instance_per_hour[type] = price.get<double>();
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgument("price table {}: {}", path, e.what());
  }
  if (t.lambda_per_gb_second < 0 || t.lambda_per_million_requests < 0) {
    return InvalidArgument("price table {}: prices must not be negative", path);
  }
  return t;
}

double PriceTable::FunctionCost(double gb_seconds, double requests) const {
  return gb_seconds * lambda_per_gb_second + requests / 1e6 * lambda_per_million_requests;
}

Result<double> PriceTable::InstanceCost(const std::string& type, double seconds) const {
  const auto it = instance_per_hour.find(type);
  if (it == instance_per_hour.end()) {
    std::vector<std::string> known;
    for (const auto& [k, v] : instance_per_hour) known.push_back(k);
    return InvalidArgument("unknown instance type '{}'; the price table knows: {}", type,
                           fmt::join(known, ", "));
  }
  return it->second * seconds / 3600.0;
}

}  // namespace p2p::offload
