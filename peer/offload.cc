#include "peer/offload.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "serverless_offload/cost.h"
#include "serverless_offload/param_store.h"

namespace p2p::peer {
namespace {

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  const size_t k = static_cast<size_t>(q * double(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// Everything the offload closure and its metrics share; lives as long as the trainer's hooks.
struct OffloadSession {
  OffloadConfig config;
  ml::ModelOptions model;
  offload::ParamStore store;
  std::unique_ptr<offload::FunctionPool> pool;
  offload::PriceTable prices;
  offload::PoolStats last;  // counters at the previous epoch's metrics
  std::chrono::steady_clock::time_point epoch_start = std::chrono::steady_clock::now();
  uint64_t next_id = 1;
  std::optional<OffloadStore> db;  // SPIRT's store path (AttachOffload)

  // The round's parts run in batches of a few tasks per function, their results summed in task
  // order as each batch completes (WeightedSum: the same bits as one batch). A fan-out round of
  // a whole epoch thus holds a few gradients at a time, not one per minibatch (844 x 940 KB for
  // mlp on Fashion-MNIST).
  Result<double> Gradient(std::vector<GradientPart>& parts, std::span<const float> params,
                          std::span<float> grad) {
    if (db) return GradientInStore(parts, params.size(), grad);
    P2P_ASSIGN_OR_RETURN(const auto version, store.Publish(params));
    uint64_t total = 0;
    for (const auto& part : parts) total += part.y.size();
    if (parts.empty() || total == 0) return InvalidArgument("an offloaded round without samples");
    offload::WeightedSum sum(grad, total);
    const size_t batch = static_cast<size_t>(std::max(4 * config.pool.functions, 8));
    for (size_t begin = 0; begin < parts.size(); begin += batch) {
      const size_t end = std::min(parts.size(), begin + batch);
      std::vector<offload::Task> tasks(end - begin);
      std::vector<uint64_t> expected(tasks.size());
      for (size_t i = 0; i < tasks.size(); ++i) {
        offload::Task& t = tasks[i];
        t.id = next_id++;
        t.model = model;
        t.params_path = version.path;
        t.params_version = version.version;
        t.num_params = params.size();
        t.x = std::move(parts[begin + i].x);
        t.y = std::move(parts[begin + i].y);
        expected[i] = t.y.size();
      }
      P2P_ASSIGN_OR_RETURN(auto results, pool->RunAll(std::move(tasks)));
      for (size_t i = 0; i < results.size(); ++i) {
        P2P_RETURN_IF_ERROR(sum.Add(results[i], expected[i]));
      }
    }
    return sum.loss_sum();
  }

  // The store path: the functions read the parameters from the peer's database and write their
  // gradients into the round's list there, slot i for part i; the peer checks the sample counts
  // and hands them to the SPIRT round, which averages the list in part order (the same weights
  // and order as WeightedSum above, so the same bits). `grad` is zeroed: the gradient is in the
  // database, and SPIRT's Average puts the aggregate there (client-side: into `grad`).
  Result<double> GradientInStore(std::vector<GradientPart>& parts, size_t num_params,
                                 std::span<float> grad) {
    if (parts.empty()) return InvalidArgument("an offloaded round without samples");
    P2P_ASSIGN_OR_RETURN(const auto where, db->begin_round(parts.size()));
    std::vector<uint64_t> samples;
    double loss_sum = 0;
    const size_t batch = static_cast<size_t>(std::max(4 * config.pool.functions, 8));
    for (size_t begin = 0; begin < parts.size(); begin += batch) {
      const size_t end = std::min(parts.size(), begin + batch);
      std::vector<offload::Task> tasks(end - begin);
      for (size_t i = 0; i < tasks.size(); ++i) {
        offload::Task& t = tasks[i];
        t.id = next_id++;
        t.model = model;
        t.params_version = where.second;
        t.num_params = num_params;
        t.store = where.first;
        t.store->index = static_cast<uint32_t>(begin + i);
        t.x = std::move(parts[begin + i].x);
        t.y = std::move(parts[begin + i].y);
        samples.push_back(t.y.size());
      }
      P2P_ASSIGN_OR_RETURN(auto results, pool->RunAll(std::move(tasks)));
      for (size_t i = 0; i < results.size(); ++i) {
        if (results[i].samples != samples[begin + i]) {
          return DataLoss("function result {} reports {} samples; its task had {}", results[i].id,
                          results[i].samples, samples[begin + i]);
        }
        loss_sum += results[i].loss_sum;
      }
    }
    std::fill(grad.begin(), grad.end(), 0.0f);
    db->pushed(std::move(samples));
    return loss_sum;
  }

  nlohmann::json EpochMetrics() {
    const auto& now = pool->stats();
    const auto wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start);
    epoch_start = std::chrono::steady_clock::now();
    const std::vector<double> latencies(
        now.latencies_ms.begin() + static_cast<std::ptrdiff_t>(last.latencies_ms.size()),
        now.latencies_ms.end());
    const double gb_s = now.gb_seconds - last.gb_seconds;
    const double requests = double(now.invocations - last.invocations);
    nlohmann::json j = {
        {"offload", config.mode},
        {"functions", config.pool.functions},
        {"invocations", now.invocations - last.invocations},
        {"cold_starts", now.cold_starts - last.cold_starts},
        {"warm_starts", now.warm_starts - last.warm_starts},
        {"fn_retries", now.retries - last.retries},
        {"fn_failures", now.failures - last.failures},
        {"fn_redeliveries", now.redeliveries - last.redeliveries},
        {"fn_latency_p50_ms", Percentile(latencies, 0.5)},
        {"fn_latency_p95_ms", Percentile(latencies, 0.95)},
        {"billed_gb_s", gb_s},
        {"function_cost_usd", prices.FunctionCost(gb_s, requests)},
    };
    if (auto cost = prices.InstanceCost(config.instance_type, wall.count()); cost.ok()) {
      j["instance_cost_usd"] = *cost;
    }
    last = now;
    return j;
  }
};

}  // namespace

Status AttachOffload(Trainer& trainer, const OffloadConfig& config,
                     std::optional<OffloadStore> db) {
  if (config.mode == "none") return Status::Ok();
  if (db && config.mode != "process") {
    return InvalidArgument(
        "--strategy spirt's functions read and write the peer's database, which only --offload "
        "process supports (an amqp task would carry the database's password through the broker)");
  }
  if (config.mode != "process" && config.mode != "amqp") {
    return InvalidArgument("--offload '{}' is not available; valid: none, process, amqp",
                           config.mode);
  }
  offload::PoolOptions pool_options = config.pool;
  pool_options.backend = config.mode;
  P2P_ASSIGN_OR_RETURN(auto pool, offload::MakeFunctionPool(pool_options));
  P2P_ASSIGN_OR_RETURN(auto store, offload::ParamStore::Create());
  offload::PriceTable prices;
  if (!config.price_table.empty()) {
    P2P_ASSIGN_OR_RETURN(prices, offload::PriceTable::Load(config.price_table));
  }
  P2P_RETURN_IF_ERROR(prices.InstanceCost(config.instance_type, 0).status());
  auto session = std::make_shared<OffloadSession>(OffloadSession{
      config, trainer.model().options(), std::move(store), std::move(pool), prices, {}});
  session->db = std::move(db);
  trainer.set_gradient_offload(
      [session](std::vector<GradientPart>& parts, std::span<const float> params,
                std::span<float> grad) { return session->Gradient(parts, params, grad); },
      config.pool.functions);
  trainer.add_metrics_extra([session](int) { return session->EpochMetrics(); });
  spdlog::info(
      "offloading gradients to up to {} {} functions ({} MB, timeout {} s, {} retries{}){}",
      config.pool.functions, config.mode, config.pool.memory_mb, config.pool.timeout_s,
      config.pool.retries, config.pool.warm ? ", warm" : "",
      session->db ? "; they read the parameters from and write gradients to this peer's database"
                  : "");
  return Status::Ok();
}

}  // namespace p2p::peer
