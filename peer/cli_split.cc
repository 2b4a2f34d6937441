// `p2ptrain split`: the study's data preparation — per-rank shard files and, for serverless
// offload, per-rank, per-batch files.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "ml/dataset.h"
#include "ml/shard_file.h"
#include "peer/cli.h"
#include "peer/cli_checks.h"

namespace p2p::peer {
namespace {

struct SplitArgs {
  ml::DataOptions data;
  std::string out;
  int size = 1;
  int batches = 0;
  std::string partition;
};

Status RunSplit(const SplitArgs& args) {
  ml::SplitOptions options;
  options.dataset = args.data.name;
  options.size = args.size;
  options.batches = args.batches;
  options.seed = args.data.seed;
  if (!args.partition.empty()) {
    P2P_ASSIGN_OR_RETURN(options.weights, ml::ParseWeights(args.partition));
  }
  P2P_ASSIGN_OR_RETURN(ml::Splits splits, ml::LoadDataset(args.data));
  P2P_RETURN_IF_ERROR(ml::WriteSplit(splits.train, options, args.out));
  fmt::print("wrote {} shards of {} training samples to {} ({})\n", args.size, splits.train.size(),
             args.out,
             args.batches > 0 ? fmt::format("{} batch files per rank", args.batches)
                              : std::string("no batch files"));
  return Status::Ok();
}

}  // namespace

Action AddSplitCommand(CLI::App& app) {
  auto args = std::make_shared<SplitArgs>();
  CLI::App* cmd = app.add_subcommand(
      "split", "Write per-rank shard files (and per-batch files) of a dataset's training split");
  cmd->add_option("--size", args->size, "Number of peers to partition among")
      ->required()
      ->transform(IntIn(1, 4096));
  cmd->add_option("--dataset", args->data.name, "Dataset")
      ->check(CLI::IsMember(ml::DatasetNames()));
  cmd->add_option("--data-dir", args->data.data_dir, "Directory of the dataset files");
  cmd->add_option("--data-seed", args->data.seed, "Seed of the split and partition")
      ->transform(Unsigned64());
  cmd->add_option("--out", args->out, "Output directory (created if missing)")->required();
  cmd->add_option("--batches", args->batches,
                  "Also cut each rank's shard into this many batch files (0 = none)")
      ->transform(NonNegativeInt());
  cmd->add_option("--partition", args->partition, "Unequal shards by weight, e.g. 3,1,1,1");
  return [args] { return ExitCodeFor(RunSplit(*args)); };
}

}  // namespace p2p::peer
