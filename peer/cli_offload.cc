// --offload flags (train, peer) and `p2ptrain function`, the function process itself.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "peer/cli.h"
#include "peer/cli_checks.h"
#include "serverless_offload/amqp_worker.h"
#include "serverless_offload/function_main.h"

namespace p2p::peer {

void AddOffloadFlags(CLI::App& cmd, OffloadConfig& c) {
  cmd.add_option("--offload", c.mode,
                 "Run gradient work on functions: none; process (a fresh `p2ptrain function` "
                 "per invocation on this host, like a Lambda cold start); amqp (a RabbitMQ work "
                 "queue served by `p2ptrain function --serve` workers on any host)")
      ->check(CLI::IsMember({"none", "process", "amqp"}));
  cmd.add_option("--functions", c.pool.functions,
                 "Concurrent functions; each minibatch is split into this many parts (with "
                 "--sync-every epoch: one function per minibatch)")
      ->transform(IntIn(1, 1024));
  cmd.add_option("--fn-memory", c.pool.memory_mb, "Memory per function in MB (address-space limit)")
      ->transform(IntIn(64, 1 << 20));
  cmd.add_option("--fn-timeout", c.pool.timeout_s, "Seconds before a function is killed")
      ->transform(PositiveReal());
  cmd.add_option("--fn-retries", c.pool.retries,
                 "Retries of a failed function before the step fails")
      ->transform(IntIn(0, 100));
  cmd.add_flag("--fn-warm", c.pool.warm, "Reuse finished function processes (warm starts)");
  cmd.add_option("--fn-broker", c.pool.broker,
                 "amqp: the RabbitMQ the workers serve, amqp[s]://user:pass@host:port/vhost");
  cmd.add_option("--fn-queue", c.pool.queue, "amqp: the work queue the workers consume")
      ->capture_default_str();
  cmd.add_option("--price-table", c.price_table,
                 "JSON prices for the cost estimate (docs/cost-model.md); default: AWS us-east-1");
  cmd.add_option("--instance-type", c.instance_type,
                 "Instance each peer runs on, for the cost estimate (t2.medium, t2.large, ...)");
}

Action AddFunctionCommand(CLI::App& app) {
  auto serve = std::make_shared<bool>(false);
  auto worker = std::make_shared<offload::WorkerOptions>();
  auto verbose = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand(
      "function",
      "A gradient function. Without --serve: serve tasks on stdin, results on stdout (started by "
      "--offload process; not meant to be run by hand). With --serve: a worker for --offload "
      "amqp on any host, e.g.\n"
      "  p2ptrain function --serve --broker amqp://u:p@mq:5672/ --fn-memory 1024\n"
      "Run one worker per core; stop it with Ctrl-C or SIGTERM (it finishes its task first).");
  cmd->add_flag("--serve", *serve, "Serve tasks from a RabbitMQ work queue until stopped");
  auto* broker = cmd->add_option("--broker", worker->broker,
                                 "--serve: the broker, amqp[s]://user:pass@host:port/vhost");
  cmd->add_option("--queue", worker->queue, "--serve: the work queue (the peers' --fn-queue)")
      ->capture_default_str();
  cmd->add_option("--fn-memory", worker->memory_mb,
                  "--serve: this worker's memory limit in MB (address space); default none")
      ->transform(IntIn(64, 1 << 20));
  cmd->add_option("--max-tasks", worker->max_tasks, "--serve: exit after this many tasks")
      ->transform(Unsigned64());
  cmd->add_option("--reconnect-timeout", worker->reconnect_timeout_s,
                  "--serve: seconds to keep retrying an unreachable or lost broker before exiting")
      ->transform(NonNegativeReal());
  cmd->add_flag("-v,--verbose", *verbose, "--serve: log every task");
  return [serve, worker, verbose, broker] {
    if (!*serve) {
      if (broker->count() > 0) {
        return ExitCodeFor(InvalidArgument("--broker needs --serve"));
      }
      return ExitCodeFor(offload::ServeTasks(STDIN_FILENO, STDOUT_FILENO));
    }
    if (worker->broker.empty()) {
      return ExitCodeFor(InvalidArgument(
          "function --serve needs --broker amqp://user:pass@host:port/ (the peers' --fn-broker)"));
    }
    if (*verbose) spdlog::set_level(spdlog::level::debug);
    return ExitCodeFor(offload::ServeAmqpWorker(*worker));
  };
}

}  // namespace p2p::peer
