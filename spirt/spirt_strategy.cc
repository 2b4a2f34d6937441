#include "spirt/spirt_strategy.h"

#include <fmt/format.h>

#include <algorithm>

#include "spirt/announcement.h"
#include "store/blob.h"
#include "sync/rules/mean.h"
#include "sync/strategy_util.h"

namespace p2p::spirt {
namespace {

using sync::SecondsSince;

std::string Str(float v) { return fmt::format("{}", v); }  // shortest round-trip: no bits lost

}  // namespace

Result<std::unique_ptr<SpirtStrategy>> SpirtStrategy::Create(
    sync::Mailbox& mailbox, std::vector<store::ConnectOptions> databases, SpirtOptions options) {
  if (databases.size() != static_cast<size_t>(mailbox.size())) {
    return InvalidArgument("SPIRT needs one database per rank: {} for {} ranks", databases.size(),
                           mailbox.size());
  }
  const std::string& opt = options.optimizer.name;
  if (options.in_db && opt != "sgd" && opt != "adam" && opt != "adamw") {
    return InvalidArgument(
        "--strategy spirt updates the model inside Redis, where P2P.UPDATE knows sgd, adam and "
        "adamw; --optimizer {} runs only with --in-db off",
        opt);
  }
  P2P_ASSIGN_OR_RETURN(store::RedisClient own,
                       store::RedisClient::Connect(databases[static_cast<size_t>(mailbox.rank())]));
  if (options.in_db) P2P_RETURN_IF_ERROR(own.RequireModule());
  std::unique_ptr<SpirtStrategy> strategy(
      new SpirtStrategy(mailbox, std::move(databases), std::move(options), std::move(own)));
  const SpirtOptions& o = strategy->options_;
  if (o.heartbeat.count() > 0 && mailbox.size() > 1) {
    strategy->db_heartbeat_ =
        std::make_unique<DbHeartbeat>(mailbox, strategy->databases_, mailbox.rank(),
                                      mailbox.view().members, o.heartbeat, o.heartbeat_timeout);
  }
  return strategy;
}

SpirtStrategy::SpirtStrategy(sync::Mailbox& mailbox, std::vector<store::ConnectOptions> databases,
                             SpirtOptions options, store::RedisClient own)
    : mailbox_(mailbox),
      databases_(std::move(databases)),
      options_(std::move(options)),
      keys_(options_.run_id),
      own_(std::make_unique<store::RedisClient>(std::move(own))),
      others_(databases_.size()) {}

Status SpirtStrategy::Expire(const std::string& key) {
  return own_->Command({"PEXPIRE", key, std::to_string(options_.key_ttl.count())}).status();
}

Status SpirtStrategy::Init(std::span<const float> params) {
  const std::string blob = store::EncodeBlob(params);
  P2P_RETURN_IF_ERROR(own_->Command({"DEL", keys_.State()}).status());
  P2P_RETURN_IF_ERROR(
      own_->Command({"SET", keys_.Params(), blob, "PX", std::to_string(options_.key_ttl.count())})
          .status());
  steps_ = 0;
  return Status::Ok();
}

Result<store::RedisClient*> SpirtStrategy::Database(int rank) {
  auto& slot = others_[static_cast<size_t>(rank)];
  if (!slot) {
    auto client = store::RedisClient::Connect(databases_[static_cast<size_t>(rank)]);
    if (!client.ok()) return client.status().Annotate(fmt::format("rank {}'s database", rank));
    slot = std::make_unique<store::RedisClient>(std::move(*client));
  }
  return slot.get();
}

Result<SpirtStrategy::FunctionRound> SpirtStrategy::BeginFunctionRound(size_t tasks) {
  P2P_CHECK(tasks > 0, "a function round without tasks");
  const uint64_t n = rounds_;
  const std::string list = keys_.Grads(n);
  std::vector<std::string_view> push = {"RPUSH", list};
  push.insert(push.end(), tasks, std::string_view());  // empty: not a blob until written
  P2P_RETURN_IF_ERROR(own_->Command({"DEL", list}).status());
  P2P_RETURN_IF_ERROR(own_->Command(push).status());
  P2P_RETURN_IF_ERROR(Expire(list));
  pushed_.reset();
  return FunctionRound{.database = databases_[static_cast<size_t>(mailbox_.rank())],
                       .params_key = keys_.Params(),
                       .list_key = list,
                       .params_version = n};
}

void SpirtStrategy::FunctionsPushed(std::vector<uint64_t> samples) {
  pushed_ = Pushed{.n = rounds_, .samples = std::move(samples)};
}

Result<std::string> SpirtStrategy::ListAverage(uint64_t n, const std::vector<uint64_t>& weights,
                                               size_t floats) {
  const std::string list = keys_.Grads(n), avg = keys_.Average(n, mailbox_.rank());
  std::vector<std::string> w;
  for (uint64_t v : weights) w.push_back(std::to_string(v));
  if (options_.in_db) {
    std::vector<std::string_view> args = {"P2P.LAVG", avg, list, "WEIGHTS"};
    args.insert(args.end(), w.begin(), w.end());
    P2P_RETURN_IF_ERROR(own_->Command(args).status());
    P2P_RETURN_IF_ERROR(Expire(avg));
    P2P_ASSIGN_OR_RETURN(store::Reply r, own_->Command({"GET", avg}));
    return std::move(r.str);
  }
  P2P_ASSIGN_OR_RETURN(store::Reply items, own_->Command({"LRANGE", list, "0", "-1"}));
  if (items.elements.size() != weights.size()) {
    return DataLoss("{}: {} holds {} gradients; {} functions ran", own_->name(), list,
                    items.elements.size(), weights.size());
  }
  std::vector<std::vector<float>> values;
  std::vector<sync::rules::Input> inputs;
  for (const store::Reply& item : items.elements) {
    auto decoded = store::DecodeBlob(item.str);
    if (!decoded.ok()) {
      return decoded.status().Annotate(
          fmt::format("{}: gradient {} of {}", own_->name(), values.size(), list));
    }
    if (decoded->size() != floats) {
      return DataLoss("{}: a gradient in {} has {} floats; the model has {}", own_->name(), list,
                      decoded->size(), floats);
    }
    values.push_back(std::move(*decoded));
  }
  for (size_t i = 0; i < values.size(); ++i) inputs.push_back({values[i], weights[i]});
  std::vector<float> mean(floats);
  P2P_RETURN_IF_ERROR(sync::rules::MeanRule().Aggregate(inputs, mean));
  std::string blob = store::EncodeBlob(mean);
  P2P_RETURN_IF_ERROR(
      own_->Command({"SET", avg, blob, "PX", std::to_string(options_.key_ttl.count())}).status());
  return blob;
}

// (a) + (b): push the gradient onto the round's list (unless the functions filled it), average
// the list; returns the average's blob (its bytes are what the announcement's SHA-256 covers).
Result<std::string> SpirtStrategy::PerPeerAverage(uint64_t n, std::span<const float> grad) {
  if (pushed_ && pushed_->n == n) return ListAverage(n, pushed_->samples, grad.size());
  // A redone round (after a view change) pushes onto a fresh list.
  P2P_RETURN_IF_ERROR(own_->Command({"DEL", keys_.Grads(n)}).status());
  P2P_RETURN_IF_ERROR(own_->Command({"RPUSH", keys_.Grads(n), store::EncodeBlob(grad)}).status());
  P2P_RETURN_IF_ERROR(Expire(keys_.Grads(n)));
  return ListAverage(n, {1}, grad.size());
}

Result<std::string> SpirtStrategy::FetchChecked(uint64_t n, int q,
                                                const broker::Envelope& announcement,
                                                uint32_t& samples) {
  if (announcement.codec.id != kAnnouncementCodec) {
    return InvalidArgument(
        "rank {} sent a gradient ('{}') where SPIRT expects an announcement "
        "(every peer needs --strategy spirt)",
        q, announcement.codec.id);
  }
  P2P_ASSIGN_OR_RETURN(const Announcement a, DecodeAnnouncement(announcement.body));
  P2P_ASSIGN_OR_RETURN(store::RedisClient * db, Database(q));
  const std::string key = keys_.Average(n, q);
  P2P_ASSIGN_OR_RETURN(store::Reply r, db->Command({"GET", key}));
  if (r.type != store::Reply::Type::kString) {
    return NotFound("{}: rank {}'s announced average {} is not there; nothing applied", db->name(),
                    q, key);
  }
  if (r.str.size() != a.length || Announce(r.str, a.samples).sha256 != a.sha256) {
    return DataLoss(
        "{}: rank {}'s average {} ({} bytes) does not match what rank {} announced ({} bytes and "
        "its SHA-256): tampered with or corrupted; nothing applied",
        db->name(), q, key, r.str.size(), q, a.length);
  }
  samples = a.samples;
  if (options_.in_db) {
    const std::string copy = keys_.Copy(n, q);
    P2P_RETURN_IF_ERROR(
        own_->Command({"SET", copy, r.str, "PX", std::to_string(options_.key_ttl.count())})
            .status());
    return copy;
  }
  return std::move(r.str);
}

Status SpirtStrategy::Average(sync::Round round, uint32_t samples, std::span<float> grad) {
  ++timings_.rounds;
  const uint64_t n = rounds_++;
  // Round n-2's average has been fetched by everyone: each announced round n-1 after it.
  if (n >= 2) P2P_RETURN_IF_ERROR(DeleteRound(n - 2, /*keep_average=*/false));
  round.view = mailbox_.view().id;
  const std::vector<int> members = mailbox_.view().members;
  if (db_heartbeat_) db_heartbeat_->SetMembers(members);
  std::vector<int> others;
  for (int r : members) {
    if (r != mailbox_.rank()) others.push_back(r);
  }
  auto t = broker::Clock::now();
  P2P_ASSIGN_OR_RETURN(const std::string own_blob, PerPeerAverage(n, grad));
  broker::Envelope env;
  env.type = broker::MessageType::kGradient;
  env.epoch = round.epoch;
  env.step = round.step;
  env.codec.id = std::string(kAnnouncementCodec);
  env.body = EncodeAnnouncement(Announce(own_blob, samples));
  P2P_RETURN_IF_ERROR(mailbox_.Send(std::move(env)));
  timings_.send_seconds += SecondsSince(t);
  timings_.raw_bytes += grad.size_bytes();
  timings_.encoded_bytes += own_blob.size();
  t = broker::Clock::now();
  P2P_ASSIGN_OR_RETURN(
      auto received,
      mailbox_.Collect(
          broker::MessageType::kGradient, round, others, t + options_.peer_timeout,
          fmt::format("SPIRT announcements of epoch {} step {}", round.epoch, round.step)));
  timings_.wait_seconds += SecondsSince(t);
  t = broker::Clock::now();
  // Every input checked before anything is combined.
  std::vector<std::string> keys_or_blobs;
  weights_.clear();
  uint64_t total = 0;
  for (int r : members) {
    uint32_t s = samples;
    if (r == mailbox_.rank()) {
      keys_or_blobs.push_back(options_.in_db ? keys_.Average(n, r) : own_blob);
    } else {
      auto fetched = FetchChecked(n, r, received.at(r), s);
      if (!fetched.ok()) {
        return fetched.status().Annotate(
            fmt::format("SPIRT round of epoch {} step {}", round.epoch, round.step));
      }
      keys_or_blobs.push_back(std::move(*fetched));
    }
    weights_.push_back(s);
    total += s;
  }
  if (total == 0) {
    return InvalidArgument("no peer had samples in epoch {} step {}", round.epoch, round.step);
  }
  if (options_.in_db) {
    // (e) in the database: sample-weighted, rank order; the bits of MeanRule.
    std::vector<std::string> args = {"P2P.AVG", keys_.Aggregate(n)};
    args.insert(args.end(), keys_or_blobs.begin(), keys_or_blobs.end());
    args.push_back("WEIGHTS");
    for (uint64_t w : weights_) args.push_back(std::to_string(w));
    std::vector<std::string_view> views(args.begin(), args.end());
    P2P_RETURN_IF_ERROR(own_->Command(views).status());
    P2P_RETURN_IF_ERROR(Expire(keys_.Aggregate(n)));
  } else {
    inputs_.clear();
    std::vector<sync::rules::Input> inputs;
    for (size_t i = 0; i < keys_or_blobs.size(); ++i) {
      P2P_ASSIGN_OR_RETURN(inputs_.emplace_back(), store::DecodeBlob(keys_or_blobs[i]));
      if (inputs_.back().size() != grad.size()) {
        return DataLoss("rank {}'s average has {} floats; the model has {}", members[i],
                        inputs_.back().size(), grad.size());
      }
    }
    for (size_t i = 0; i < inputs_.size(); ++i) inputs.push_back({inputs_[i], weights_[i]});
    P2P_RETURN_IF_ERROR(sync::rules::MeanRule().Aggregate(inputs, grad));
  }
  timings_.reduce_seconds += SecondsSince(t);
  return Status::Ok();
}

std::vector<std::string> SpirtStrategy::UpdateArgs(float lr, int64_t step) const {
  const ml::OptimizerOptions& o = options_.optimizer;
  const uint64_t n = rounds_ - 1;
  std::vector<std::string> args = {
      "P2P.UPDATE", keys_.Params(), keys_.Aggregate(n), "STATE", keys_.State(), "OPT", o.name, "LR",
      Str(lr),      "WD",           Str(o.weight_decay)};
  if (o.name == "sgd") {
    args.insert(args.end(), {"MOMENTUM", Str(o.momentum)});
    if (o.nesterov) args.push_back("NESTEROV");
  } else {
    args.insert(args.end(), {"BETAS", Str(o.beta1), Str(o.beta2), "EPS", Str(o.eps)});
  }
  args.insert(args.end(), {"STEP", std::to_string(step)});
  return args;
}

Status SpirtStrategy::Update(std::span<float> params, std::span<const float> grad,
                             ml::Optimizer& optimizer) {
  P2P_CHECK(rounds_ > 0, "SpirtStrategy::Update before any Average");
  if (options_.rollback) P2P_RETURN_IF_ERROR(KeepPrevious());
  if (options_.in_db) {
    const std::vector<std::string> args = UpdateArgs(optimizer.lr(), steps_ + 1);
    std::vector<std::string_view> views(args.begin(), args.end());
    P2P_RETURN_IF_ERROR(own_->Command(views).status());
    P2P_ASSIGN_OR_RETURN(std::vector<float> updated, own_->GetBlob(keys_.Params()));
    if (updated.size() != params.size()) {
      return DataLoss("{}: {} holds {} floats; the model has {}", own_->name(), keys_.Params(),
                      updated.size(), params.size());
    }
    std::copy(updated.begin(), updated.end(), params.begin());
    P2P_RETURN_IF_ERROR(Expire(keys_.State()));
  } else {
    optimizer.Step(params, grad);
    P2P_RETURN_IF_ERROR(own_->Command({"SET", keys_.Params(), store::EncodeBlob(params), "PX",
                                       std::to_string(options_.key_ttl.count())})
                            .status());
  }
  P2P_RETURN_IF_ERROR(Expire(keys_.Params()));
  ++steps_;
  return DeleteRound(rounds_ - 1, /*keep_average=*/true);
}

Status SpirtStrategy::KeepPrevious() {
  // COPY keeps the TTL; a state that does not exist yet (step 1) leaves no :prev state.
  P2P_RETURN_IF_ERROR(own_->Command({"DEL", keys_.PreviousState()}).status());
  P2P_RETURN_IF_ERROR(
      own_->Command({"COPY", keys_.Params(), keys_.PreviousParams(), "REPLACE"}).status());
  return own_->Command({"COPY", keys_.State(), keys_.PreviousState(), "REPLACE"}).status();
}

Status SpirtStrategy::RestorePrevious() {
  if (!options_.rollback) {
    return Internal(
        "SPIRT: asked to undo an update, but the database keeps no previous parameters");
  }
  P2P_ASSIGN_OR_RETURN(store::Reply copied,
                       own_->Command({"COPY", keys_.PreviousParams(), keys_.Params(), "REPLACE"}));
  if (copied.integer != 1) {
    return DataLoss("{}: {} is gone; the update cannot be undone", own_->name(),
                    keys_.PreviousParams());
  }
  P2P_ASSIGN_OR_RETURN(store::Reply state,
                       own_->Command({"COPY", keys_.PreviousState(), keys_.State(), "REPLACE"}));
  if (state.integer == 1) return Status::Ok();
  return own_->Command({"DEL", keys_.State()}).status();  // undoing step 1: no state before it
}

namespace {

// Counters as floats of 16 bits each (exact in binary32): SaveState's type is float buffers.
void PutCounter(uint64_t v, std::vector<float>& out) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<float>((v >> (16 * i)) & 0xffff));
}

Result<uint64_t> TakeCounter(std::span<const float> in) {
  uint64_t v = 0;
  for (int i = 0; i < 4; ++i) {
    const float f = in[static_cast<size_t>(i)];
    if (!(f >= 0 && f <= 65535) || f != static_cast<float>(static_cast<uint32_t>(f))) {
      return InvalidArgument("not a SPIRT round counter");
    }
    v |= static_cast<uint64_t>(f) << (16 * i);
  }
  return v;
}

}  // namespace

std::vector<std::vector<float>> SpirtStrategy::SaveState() const {
  std::vector<float> counters;
  PutCounter(rounds_, counters);
  PutCounter(static_cast<uint64_t>(steps_), counters);
  return {counters};
}

Status SpirtStrategy::LoadState(std::vector<std::vector<float>> state) {
  if (state.empty()) return Status::Ok();  // a fresh start: nothing to restore
  if (state.size() != 1 || state[0].size() != 8) {
    return InvalidArgument(
        "the state given to --strategy spirt is not its round counters (a checkpoint of "
        "another strategy?)");
  }
  P2P_ASSIGN_OR_RETURN(const uint64_t rounds, TakeCounter(std::span(state[0]).first(4)));
  P2P_ASSIGN_OR_RETURN(const uint64_t steps, TakeCounter(std::span(state[0]).subspan(4)));
  if (steps + 1 == static_cast<uint64_t>(steps_)) {
    P2P_RETURN_IF_ERROR(RestorePrevious());
  } else if (steps != static_cast<uint64_t>(steps_)) {
    return Internal("SPIRT can undo one update in its database, not go from {} updates back to {}",
                    steps_, steps);
  }
  rounds_ = rounds;
  steps_ = static_cast<int64_t>(steps);
  return Status::Ok();
}

Status SpirtStrategy::DeleteRound(uint64_t n, bool keep_average) {
  std::vector<std::string> args = {"DEL", keys_.Grads(n), keys_.Aggregate(n)};
  for (int r = 0; r < mailbox_.size(); ++r) {
    if (r != mailbox_.rank()) args.push_back(keys_.Copy(n, r));
  }
  if (!keep_average) args.push_back(keys_.Average(n, mailbox_.rank()));
  std::vector<std::string_view> views(args.begin(), args.end());
  return own_->Command(views).status();
}

Result<uint64_t> SpirtStrategy::Cleanup() {
  db_heartbeat_.reset();
  uint64_t deleted = 0;
  std::string cursor = "0";
  const std::string pattern = keys_.Pattern();
  do {
    P2P_ASSIGN_OR_RETURN(store::Reply page,
                         own_->Command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"}));
    if (page.type != store::Reply::Type::kArray || page.elements.size() != 2) {
      return DataLoss("{}: unexpected SCAN reply", own_->name());
    }
    cursor = page.elements[0].str;
    std::vector<std::string_view> del = {"DEL"};
    for (const store::Reply& key : page.elements[1].elements) del.push_back(key.str);
    if (del.size() > 1) {
      P2P_ASSIGN_OR_RETURN(store::Reply r, own_->Command(del));
      deleted += static_cast<uint64_t>(r.integer);
    }
  } while (cursor != "0");
  return deleted;
}

}  // namespace p2p::spirt
