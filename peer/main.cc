// p2ptrain: peer-to-peer data-parallel training. See README.md and `p2ptrain --help`.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "common/malloc_tuning.h"
#include "peer/cli.h"

int main(int argc, char** argv) {
  using namespace p2p::peer;
  p2p::KeepFreedMemoryForReuse();
  CLI::App app{
      "p2ptrain: peer-to-peer data-parallel training with compressed, signed gradient exchange.\n"
      "Run `p2ptrain <command> --help` for the flags of a command."};
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();
  const Action train = AddTrainCommand(app);
  const Action split = AddSplitCommand(app);
  const Action launch = AddLaunchCommand(app);
  const Action peer = AddPeerCommand(app);
  const Action rendezvous = AddBrokerCommand(app);
  const Action function = AddFunctionCommand(app);
  const Action keygen = AddKeygenCommand(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("p2ptrain"));
  spdlog::set_pattern("%^[%H:%M:%S.%e %l]%$ %v");
  try {
    if (app.got_subcommand("train")) return train();
    if (app.got_subcommand("split")) return split();
    if (app.got_subcommand("launch")) return launch();
    if (app.got_subcommand("peer")) return peer();
    if (app.got_subcommand("broker")) return rendezvous();
    if (app.got_subcommand("function")) return function();
    if (app.got_subcommand("keygen")) return keygen();
  } catch (const std::exception& e) {
    spdlog::critical("internal error: {} (please report this with the command line)", e.what());
    return kExitRuntime;
  }
  return kExitUsage;
}
