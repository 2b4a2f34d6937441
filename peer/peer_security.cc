#include "peer/peer_security.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

namespace p2p::peer {
namespace {

bool HasFlag(const std::vector<std::string>& args, std::string_view flag) {
  return std::any_of(args.begin(), args.end(), [&](const std::string& arg) {
    return std::string_view(arg).substr(0, arg.find('=')) == flag;
  });
}

// A file error is the user's to fix (exit 2) unless the OS failed us.
Status AsUsage(const Status& s, std::string_view flag) {
  if (s.ok()) return s;
  const StatusCode code =
      s.code() == StatusCode::kNotFound ? StatusCode::kInvalidArgument : s.code();
  return Status(code, s.message()).Annotate(flag);
}

}  // namespace

void AddSecurityFlags(CLI::App& cmd, PeerOptions& o) {
  cmd.add_option("--key", o.key,
                 "This peer's private key (PEM, mode 0600), e.g. keys/private.pem from "
                 "`p2ptrain keygen --out keys`");
  cmd.add_option("--key-pass-env", o.key_pass_env,
                 "NAME of an environment variable holding the private key's passphrase (the "
                 "passphrase itself never goes on a command line)");
  cmd.add_option("--trust", o.trust,
                 "Public keys allowed in the run: a directory of PEM files, or one PEM file");
  cmd.add_option("--manifest", o.manifest,
                 "Optional file of '<rank> <fingerprint>' lines: which key may take which rank");
  cmd.add_flag("--insecure", o.insecure,
               "Turn authentication OFF: nothing is signed or checked (benchmarking only)");
}

Status CheckSecurityFlags(const PeerOptions& o) {
  if (o.insecure) {
    if (!o.key.empty() || !o.trust.empty() || !o.manifest.empty() || !o.key_pass_env.empty()) {
      return InvalidArgument(
          "--insecure turns authentication off; it cannot be combined with --key, "
          "--key-pass-env, --trust or --manifest");
    }
    return Status::Ok();
  }
  if (o.key.empty() && o.trust.empty()) {
    return InvalidArgument(
        "p2ptrain peer authenticates every peer and every message: give --key FILE (this "
        "peer's private key; create one with `p2ptrain keygen --out DIR`) and --trust DIR (the "
        "public keys of the run's peers), or pass --insecure to run without authentication "
        "(benchmarking only). `p2ptrain launch` creates keys for local runs by itself.");
  }
  if (o.key.empty()) {
    return InvalidArgument(
        "--trust needs --key FILE: this peer's private key (create one with `p2ptrain keygen "
        "--out DIR`)");
  }
  if (o.trust.empty()) {
    return InvalidArgument(
        "--key needs --trust DIR: the public keys of the run's peers (each peer's public.pem "
        "from `p2ptrain keygen`)");
  }
  return Status::Ok();
}

Result<std::unique_ptr<PeerSecurity>> PeerSecurity::Load(const PeerOptions& o, int rank, int size) {
  if (o.insecure) {
    spdlog::warn(
        "*** --insecure: AUTHENTICATION IS OFF. This peer signs nothing and checks nothing: "
        "anyone who can reach the run's transport can join it and inject, alter or replay "
        "gradients. Use only to benchmark the cost of authentication. ***");
    return std::unique_ptr<PeerSecurity>();
  }
  std::optional<std::string> passphrase;
  if (!o.key_pass_env.empty()) {
    P2P_ASSIGN_OR_RETURN(passphrase, crypto::PassphraseFromEnv(o.key_pass_env));
  }
  auto key = crypto::LoadPrivateKey(o.key, passphrase);
  if (!key.ok()) return AsUsage(key.status(), "--key");
  auto trust = crypto::TrustStore::Load(o.trust);
  if (!trust.ok()) return AsUsage(trust.status(), "--trust");
  if (!o.manifest.empty()) {
    P2P_RETURN_IF_ERROR(AsUsage(trust->LoadManifest(o.manifest, size), "--manifest"));
    if (const std::string why = trust->WhyNot(rank, key->fingerprint()); !why.empty()) {
      return InvalidArgument("--manifest: this peer's key cannot take rank {}: {}", rank, why);
    }
  }
  if (trust->Find(key->fingerprint()) == nullptr) {
    spdlog::warn(
        "this peer's own key {} is not in --trust {}: the other peers will refuse it "
        "unless their trust stores differ from this one",
        key->fingerprint().Short(), o.trust);
  }
  auto security =
      std::unique_ptr<PeerSecurity>(new PeerSecurity(std::move(*key), std::move(*trust)));
  P2P_ASSIGN_OR_RETURN(
      auto handshake,
      crypto::JoinHandshake::Create({o.run_id, size, rank, &security->key_, &security->trust_}));
  security->auth_ = std::make_unique<sync::SessionAuthenticator>(std::move(handshake), rank, size);
  spdlog::info("identity {} ({}-bit RSA); {} trusted keys{}", security->key_.fingerprint().Short(),
               security->key_.public_key().bits(), security->trust_.size(),
               security->trust_.has_manifest() ? ", ranks bound by the manifest" : "");
  return security;
}

Status PeerSecurity::Join(sync::Mailbox& mailbox, broker::Deadline deadline) {
  P2P_RETURN_IF_ERROR(sync::JoinRun(mailbox, *auth_, deadline));
  spdlog::info(
      "authenticated: all {} other peer(s) proved their identities; every message is "
      "now signed and checked",
      mailbox.size() - 1);
  return Status::Ok();
}

Result<std::unique_ptr<RunKeys>> RunKeys::Create(int size, int bits) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "p2ptrain-keys-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {  // mode 0700
    return IoError("creating a directory for the run's keys ({}): {}", tmpl, std::strerror(errno));
  }
  auto keys = std::unique_ptr<RunKeys>(new RunKeys(tmpl));
  const std::string trust = tmpl + "/trust";
  std::error_code ec;
  std::filesystem::create_directory(trust, ec);
  if (ec) return IoError("creating {}: {}", trust, ec.message());
  // Key generation is the slow part (~0.1-0.5 s per key): spread it over the cores.
  std::vector<Result<crypto::PrivateKey>> generated;
  for (int r = 0; r < size; ++r) generated.emplace_back(Internal("not generated"));
  const int workers = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, size);
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      for (int r = w; r < size; r += workers) generated[r] = crypto::PrivateKey::Generate(bits);
    });
  }
  for (auto& t : threads) t.join();
  std::string manifest;
  for (int r = 0; r < size; ++r) {
    if (!generated[r].ok()) return generated[r].status();
    const std::string rank_dir = fmt::format("{}/rank-{}", tmpl, r);
    if (::mkdir(rank_dir.c_str(), 0700) != 0) {
      return IoError("creating {}: {}", rank_dir, std::strerror(errno));
    }
    P2P_RETURN_IF_ERROR(
        crypto::WritePrivateKey(rank_dir + "/private.pem", *generated[r], std::nullopt));
    P2P_RETURN_IF_ERROR(crypto::WritePublicKey(fmt::format("{}/rank-{}.pem", trust, r),
                                               generated[r]->public_key()));
    manifest += fmt::format("{} {}\n", r, generated[r]->fingerprint().ToString());
  }
  std::ofstream out(tmpl + "/manifest");
  out << "# rank fingerprint (written by p2ptrain launch)\n" << manifest;
  out.close();
  if (!out) return IoError("writing {}/manifest failed", tmpl);
  return keys;
}

RunKeys::~RunKeys() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::vector<std::string> RunKeys::PeerFlags(int rank) const {
  return {"--key",      fmt::format("{}/rank-{}/private.pem", dir_, rank),
          "--trust",    dir_ + "/trust",
          "--manifest", dir_ + "/manifest"};
}

bool NeedsRunKeys(const std::vector<std::string>& peer_args) {
  for (std::string_view flag : {"--key", "--trust", "--manifest", "--insecure", "--key-pass-env"}) {
    if (HasFlag(peer_args, flag)) return false;
  }
  return true;
}

}  // namespace p2p::peer
