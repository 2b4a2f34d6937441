#include "spirt/directory.h"

#include <fmt/format.h>

#include <charconv>
#include <fstream>
#include <sstream>

namespace p2p::spirt {
namespace {

constexpr size_t kMaxLineBytes = 4096;

// One "<rank> <url> [<password file>]" line into `out` (indexed by rank).
Status ParseLine(const std::string& line, int size, std::vector<store::ConnectOptions>& out,
                 std::vector<bool>& seen) {
  std::istringstream in(line);
  std::string rank_text, url, password_file, extra;
  in >> rank_text >> url >> password_file >> extra;
  if (url.empty() || !extra.empty()) {
    return InvalidArgument("expected '<rank> <store URL> [<password file>]'");
  }
  int rank = -1;
  const auto [end, ec] =
      std::from_chars(rank_text.data(), rank_text.data() + rank_text.size(), rank);
  if (ec != std::errc() || end != rank_text.data() + rank_text.size() || rank < 0 || rank >= size) {
    return InvalidArgument("rank '{}' is not in 0..{}", rank_text, size - 1);
  }
  if (seen[static_cast<size_t>(rank)]) return InvalidArgument("rank {} is listed twice", rank);
  seen[static_cast<size_t>(rank)] = true;
  P2P_ASSIGN_OR_RETURN(store::StoreAddress address, store::ParseStoreUrl(url));
  // Only the named file: $P2P_REDIS_PASSWORD is this peer's own database's password.
  P2P_ASSIGN_OR_RETURN(auto password, store::ResolvePassword(address, password_file, nullptr));
  store::ConnectOptions& o = out[static_cast<size_t>(rank)];
  o.address = std::move(address);
  o.password = std::move(password);
  return Status::Ok();
}

}  // namespace

Result<std::vector<store::ConnectOptions>> ReadStoreDirectory(const std::string& path, int size) {
  std::ifstream in(path);
  if (!in) return IoError("cannot read the store directory --store-peers '{}'", path);
  std::vector<store::ConnectOptions> out(static_cast<size_t>(size));
  std::vector<bool> seen(static_cast<size_t>(size), false);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.size() > kMaxLineBytes) {
      return InvalidArgument("--store-peers {} line {}: longer than {} bytes", path, number,
                             kMaxLineBytes);
    }
    if (const size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (Status s = ParseLine(line, size, out, seen); !s.ok()) {
      return s.Annotate(fmt::format("--store-peers {} line {}", path, number));
    }
  }
  for (int r = 0; r < size; ++r) {
    if (!seen[static_cast<size_t>(r)]) {
      return InvalidArgument(
          "--store-peers {} names no database for rank {} (it needs one line "
          "per rank 0..{})",
          path, r, size - 1);
    }
  }
  return out;
}

}  // namespace p2p::spirt
