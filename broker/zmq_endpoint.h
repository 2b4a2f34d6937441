// ZeroMQ endpoint strings for the mesh and the rendezvous: parsing `--peers` and deriving the
// address a rank binds. Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace p2p::broker {

inline constexpr size_t kMaxEndpointBytes = 256;

// "host:port" -> "tcp://host:port"; "tcp://host:port" and "ipc://path" are kept. The port must be
// 1..65535 (IPv6 hosts in brackets: "[::1]:5555"). InvalidArgument naming the entry otherwise.
Result<std::string> NormalizeEndpoint(std::string_view endpoint);

// Splits a `--peers` list ("h1:p1,h2:p2,..." ; rank i = i-th entry) and normalises each entry.
Result<std::vector<std::string>> ParsePeerList(std::string_view csv);

// What the owner of a (normalised) endpoint binds: "tcp://*:port" for tcp, the same path for ipc.
Result<std::string> BindEndpointFor(std::string_view endpoint);

}  // namespace p2p::broker
