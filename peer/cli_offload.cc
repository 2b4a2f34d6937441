// --offload flags (train, peer) and `p2ptrain function`, the function process itself.
#include <unistd.h>

#include "peer/cli.h"
#include "serverless_offload/function_main.h"

namespace p2p::peer {

void AddOffloadFlags(CLI::App& cmd, OffloadConfig& c) {
  cmd.add_option("--offload", c.mode,
                 "Run gradient work on short-lived function processes: none or process (a fresh "
                 "`p2ptrain function` per invocation, like a Lambda cold start)")
      ->check(CLI::IsMember({"none", "process"}));
  cmd.add_option("--functions", c.pool.functions,
                 "Concurrent functions; each minibatch is split into this many parts (with "
                 "--sync-every epoch: one function per minibatch)")
      ->check(CLI::Range(1, 1024));
  cmd.add_option("--fn-memory", c.pool.memory_mb, "Memory per function in MB (address-space limit)")
      ->check(CLI::Range(64, 1 << 20));
  cmd.add_option("--fn-timeout", c.pool.timeout_s, "Seconds before a function is killed")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--fn-retries", c.pool.retries,
                 "Retries of a failed function before the step fails")
      ->check(CLI::Range(0, 100));
  cmd.add_flag("--fn-warm", c.pool.warm, "Reuse finished function processes (warm starts)");
  cmd.add_option("--price-table", c.price_table,
                 "JSON prices for the cost estimate (docs/cost-model.md); default: AWS us-east-1");
  cmd.add_option("--instance-type", c.instance_type,
                 "Instance each peer runs on, for the cost estimate (t2.medium, t2.large, ...)");
}

Action AddFunctionCommand(CLI::App& app) {
  app.add_subcommand("function",
                     "Serve gradient tasks on stdin, results on stdout (started by --offload; "
                     "not meant to be run by hand)");
  return [] { return ExitCodeFor(offload::ServeTasks(STDIN_FILENO, STDOUT_FILENO)); };
}

}  // namespace p2p::peer
