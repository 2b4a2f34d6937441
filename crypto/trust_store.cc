#include "crypto/trust_store.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace p2p::crypto {

Result<TrustStore> TrustStore::Load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    return NotFound(
        "trust store {} does not exist (--trust: a directory of the run's public keys, "
        "or one PEM file)",
        path);
  }
  std::vector<std::string> files;
  if (fs::is_directory(st)) {
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      if (entry.path().filename().string().starts_with(".")) continue;
      if (!entry.is_regular_file()) continue;
      files.push_back(entry.path().string());
    }
    if (ec) return IoError("listing trust store {}: {}", path, ec.message());
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  TrustStore store;
  for (const std::string& file : files) {
    P2P_ASSIGN_OR_RETURN(auto keys, LoadPublicKeys(file));
    for (PublicKey& key : keys) store.Add(std::move(key));
  }
  if (store.size() == 0) {
    return InvalidArgument(
        "trust store {} holds no public keys (copy every peer's public.pem "
        "into it)",
        path);
  }
  return store;
}

void TrustStore::Add(PublicKey key) {
  const Fingerprint fp = key.fingerprint();
  keys_.insert_or_assign(fp, std::move(key));
}

const PublicKey* TrustStore::Find(const Fingerprint& fp) const {
  const auto it = keys_.find(fp);
  return it == keys_.end() ? nullptr : &it->second;
}

std::vector<Fingerprint> TrustStore::Fingerprints() const {
  std::vector<Fingerprint> out;
  for (const auto& [fp, key] : keys_) out.push_back(fp);
  return out;
}

void TrustStore::BindRank(int rank, const Fingerprint& fp) { rank_to_key_[rank] = fp; }

Status TrustStore::LoadManifest(const std::string& path, int size) {
  std::ifstream in(path);
  if (!in) return NotFound("manifest {} cannot be read", path);
  std::map<int, Fingerprint> bound;
  std::map<Fingerprint, int> by_key;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (const size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream fields(line);
    std::string rank_text, fp_text, extra;
    if (!(fields >> rank_text)) continue;  // blank or comment
    const auto where = [&] { return fmt::format("manifest {} line {}", path, number); };
    int rank = -1;
    try {
      size_t used = 0;
      rank = std::stoi(rank_text, &used);
      if (used != rank_text.size()) rank = -1;
    } catch (const std::exception&) {
      rank = -1;
    }
    if (!(fields >> fp_text) || (fields >> extra)) {
      return InvalidArgument("{}: expected '<rank> <fingerprint>'", where());
    }
    if (rank < 0 || rank >= size) {
      return InvalidArgument("{}: rank '{}' is not in 0..{}", where(), rank_text, size - 1);
    }
    auto fp = Fingerprint::Parse(fp_text);
    if (!fp.ok()) return fp.status().Annotate(where());
    if (Find(*fp) == nullptr) {
      return InvalidArgument("{}: key {} is not in the trust store", where(), fp->ToString());
    }
    if (bound.contains(rank)) return InvalidArgument("{}: rank {} is bound twice", where(), rank);
    if (by_key.contains(*fp)) {
      return InvalidArgument("{}: key {} is already bound to rank {}", where(), fp->Short(),
                             by_key[*fp]);
    }
    bound[rank] = *fp;
    by_key[*fp] = rank;
  }
  for (int r = 0; r < size; ++r) {
    if (!bound.contains(r)) return InvalidArgument("manifest {} binds no key to rank {}", path, r);
  }
  rank_to_key_ = std::move(bound);
  return Status::Ok();
}

std::string TrustStore::ReasonNot(int rank, const Fingerprint& fp) const {
  if (Find(fp) == nullptr) return "untrusted_key";
  if (has_manifest()) {
    const auto it = rank_to_key_.find(rank);
    if (it == rank_to_key_.end() || it->second != fp) return "wrong_rank";
  }
  return "";
}

std::string TrustStore::WhyNot(int rank, const Fingerprint& fp) const {
  const std::string reason = ReasonNot(rank, fp);
  if (reason == "untrusted_key") {
    return fmt::format("key {} is not in the trust store", fp.ToString());
  }
  if (reason == "wrong_rank") {
    const auto it = rank_to_key_.find(rank);
    return it == rank_to_key_.end() ? fmt::format("the manifest binds no key to rank {}", rank)
                                    : fmt::format("the manifest binds rank {} to {}, not to {}",
                                                  rank, it->second.Short(), fp.Short());
  }
  return "";
}

}  // namespace p2p::crypto
