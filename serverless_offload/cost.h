// Cost model of offloading (docs/cost-model.md): Lambda's price per GB-second and per request,
// and the hourly price of the instance each peer runs on.
#pragma once

#include <map>
#include <string>

#include "common/status.h"

namespace p2p::offload {

struct PriceTable {
  // AWS Lambda, x86, us-east-1 (docs/cost-model.md cites the sources).
  double lambda_per_gb_second = 0.0000166667;
  double lambda_per_million_requests = 0.20;
  // EC2 on-demand $/hour, us-east-1.
  std::map<std::string, double> instance_per_hour = {{"t2.medium", 0.0464}, {"t2.large", 0.0928}};

  // {"lambda_per_gb_second": x, "lambda_per_million_requests": y, "instance_per_hour": {...}};
  // missing keys keep the defaults. IoError/InvalidArgument naming the file and key.
  static Result<PriceTable> Load(const std::string& path);
  double FunctionCost(double gb_seconds, double requests) const;
  // InvalidArgument listing the known types if `type` is not in the table.
  Result<double> InstanceCost(const std::string& type, double seconds) const;
};

}  // namespace p2p::offload
