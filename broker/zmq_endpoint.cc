#include "broker/zmq_endpoint.h"

#include <charconv>

namespace p2p::broker {
namespace {

constexpr std::string_view kTcp = "tcp://";
constexpr std::string_view kIpc = "ipc://";

Status CheckPort(std::string_view endpoint, std::string_view port) {
  int value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value < 1 ||
      value > 65535) {
    return InvalidArgument("endpoint '{}': port '{}' is not in 1..65535", endpoint, port);
  }
  return Status::Ok();
}

// Splits "host:port" at the last colon; the host may be a bracketed IPv6 address.
Result<std::pair<std::string_view, std::string_view>> SplitHostPort(std::string_view endpoint,
                                                                    std::string_view host_port) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return InvalidArgument("endpoint '{}': expected host:port", endpoint);
  }
  std::string_view host = host_port.substr(0, colon);
  std::string_view port = host_port.substr(colon + 1);
  P2P_RETURN_IF_ERROR(CheckPort(endpoint, port));
  return std::make_pair(host, port);
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

Result<std::string> NormalizeEndpoint(std::string_view endpoint) {
  endpoint = Trim(endpoint);
  if (endpoint.empty() || endpoint.size() > kMaxEndpointBytes) {
    return InvalidArgument("endpoint of {} bytes outside [1, {}]", endpoint.size(),
                           kMaxEndpointBytes);
  }
  if (endpoint.starts_with(kIpc)) {
    if (endpoint.size() == kIpc.size())
      return InvalidArgument("endpoint '{}': empty path", endpoint);
    return std::string(endpoint);
  }
  if (endpoint.find("://") != std::string_view::npos && !endpoint.starts_with(kTcp)) {
    return InvalidArgument("endpoint '{}': only tcp:// and ipc:// are supported", endpoint);
  }
  std::string_view host_port = endpoint.starts_with(kTcp) ? endpoint.substr(kTcp.size()) : endpoint;
  P2P_RETURN_IF_ERROR(SplitHostPort(endpoint, host_port).status());
  return std::string(kTcp) + std::string(host_port);
}

Result<std::vector<std::string>> ParsePeerList(std::string_view csv) {
  std::vector<std::string> out;
  while (true) {
    const size_t comma = csv.find(',');
    Result<std::string> e = NormalizeEndpoint(csv.substr(0, comma));
    if (!e.ok()) return e.status().Annotate(fmt::format("--peers entry {}", out.size()));
    out.push_back(std::move(*e));
    if (comma == std::string_view::npos) break;
    csv.remove_prefix(comma + 1);
  }
  return out;
}

Result<std::string> BindEndpointFor(std::string_view endpoint) {
  P2P_ASSIGN_OR_RETURN(std::string normal, NormalizeEndpoint(endpoint));
  if (normal.starts_with(kIpc)) return normal;
  P2P_ASSIGN_OR_RETURN(auto host_port,
                       SplitHostPort(normal, std::string_view(normal).substr(kTcp.size())));
  return fmt::format("tcp://*:{}", host_port.second);
}

}  // namespace p2p::broker
