// `p2ptrain keygen`: a peer's RSA identity (docs/security.md).
#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

#include "crypto/keys.h"
#include "peer/cli.h"
#include "peer/cli_checks.h"

namespace p2p::peer {
namespace {

struct KeygenArgs {
  std::string out;
  int bits = crypto::kDefaultRsaBits;
  std::string pass_env;
};

Status RunKeygen(const KeygenArgs& a) {
  std::optional<std::string> passphrase;
  if (!a.pass_env.empty()) {
    P2P_ASSIGN_OR_RETURN(passphrase, crypto::PassphraseFromEnv(a.pass_env));
  }
  std::error_code ec;
  if (!std::filesystem::exists(a.out, ec)) {
    std::filesystem::create_directories(a.out, ec);
    if (ec || ::chmod(a.out.c_str(), 0700) != 0) {
      return IoError("creating --out {}: {}", a.out, ec ? ec.message() : std::strerror(errno));
    }
  }
  if (!std::filesystem::is_directory(a.out, ec)) {
    return InvalidArgument("--out {} is not a directory", a.out);
  }
  const std::string private_path = (std::filesystem::path(a.out) / "private.pem").string();
  const std::string public_path = (std::filesystem::path(a.out) / "public.pem").string();
  for (const std::string& path : {private_path, public_path}) {
    if (std::filesystem::exists(path)) {
      return InvalidArgument(
          "{} already exists; refusing to overwrite a key (remove it first or "
          "choose another --out)",
          path);
    }
  }
  P2P_ASSIGN_OR_RETURN(crypto::PrivateKey key, crypto::PrivateKey::Generate(a.bits));
  P2P_RETURN_IF_ERROR(crypto::WritePrivateKey(private_path, key, passphrase));
  P2P_RETURN_IF_ERROR(crypto::WritePublicKey(public_path, key.public_key()));
  fmt::print(
      "wrote {} (the private key, mode 0600{}: keep it on this host, never share it)\n"
      "wrote {} (the public key: copy it into every peer's --trust directory)\n"
      "identity {}\n",
      private_path, passphrase ? ", encrypted" : "", public_path, key.fingerprint().ToString());
  return Status::Ok();
}

}  // namespace

Action AddKeygenCommand(CLI::App& app) {
  auto args = std::make_shared<KeygenArgs>();
  CLI::App* cmd = app.add_subcommand(
      "keygen",
      "Create a peer's identity: an RSA key pair in DIR/private.pem (mode 0600) and "
      "DIR/public.pem, and print its fingerprint (SHA-256 of the public key), the identity the "
      "other peers see. Give public.pem to the other peers (their --trust directory) and run the "
      "peer with --key DIR/private.pem.\n"
      "Example:\n"
      "  p2ptrain keygen --out keys/\n"
      "  P2P_KEY_PASS=... p2ptrain keygen --out keys/ --key-pass-env P2P_KEY_PASS");
  cmd->add_option("--out", args->out, "Directory for private.pem and public.pem (created 0700)")
      ->required();
  cmd->add_option("--bits", args->bits, "RSA modulus size")
      ->transform(IntIn(crypto::kMinRsaBits, crypto::kMaxRsaBits));
  cmd->add_option("--key-pass-env", args->pass_env,
                  "NAME of an environment variable holding a passphrase to encrypt the private "
                  "key with (AES-256, PBKDF2); the passphrase never goes on a command line");
  return [args] { return ExitCodeFor(RunKeygen(*args)); };
}

}  // namespace p2p::peer
