// P2P.UPDATE: one optimizer step on a parameter blob, in place, with ml/'s kernels
// (ml/optimizer_kernels.cc, compiled into the module), so the parameters are bitwise those
// ml::Optimizer::Step computes from the same inputs.
//
// State: one blob at `statekey` holding the optimizer's buffers one after the other, each of the
// parameter count: sgd with momentum [momentum_buffer], adam/adamw [exp_avg, exp_avg_sq] (the
// order of ml::Optimizer::SaveState), created zeroed on the first step. The module keeps no step
// count: STEP t (the step being taken, 1 first) is required once the state exists.
#include <strings.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>

#include "ml/optimizer_kernels.h"
#include "redis_module/blob_access.h"
#include "redis_module/command_util.h"
#include "redis_module/commands.h"
#include "store/blob.h"

namespace p2p::redis_module {
namespace {

constexpr std::string_view kCmd = "P2P.UPDATE";

struct UpdateArgs {
  std::string opt;  // sgd | adam | adamw
  std::optional<float> lr, momentum, wd, beta1, beta2, eps;
  bool nesterov = false;
  std::optional<int64_t> step;
};

bool Is(std::string_view a, std::string_view word) {
  return a.size() == word.size() && strncasecmp(a.data(), word.data(), word.size()) == 0;
}

// A float parsed the way ml/ parses --lr (from_chars to float directly, no double rounding):
// the caller sends the shortest decimal that round-trips its float.
Result<float> ParseFloat(RedisModuleString* arg, std::string_view what) {
  const std::string_view text = ArgText(arg);
  float value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() ||
      !std::isfinite(value)) {
    return InvalidArgument("{}: {} '{}' is not a finite number", kCmd, what, text);
  }
  return value;
}

Status SetOnce(std::optional<float>& slot, RedisModuleString* arg, std::string_view what) {
  if (slot) return InvalidArgument("{}: {} given twice", kCmd, what);
  P2P_ASSIGN_OR_RETURN(slot, ParseFloat(arg, what));
  return Status::Ok();
}

Result<UpdateArgs> Parse(RedisModuleString** argv, int argc) {
  if (argc < 9 || !Is(ArgText(argv[3]), "STATE")) {
    return InvalidArgument(
        "{}: usage P2P.UPDATE params grad STATE statekey OPT sgd|adam|adamw LR lr [MOMENTUM m] "
        "[NESTEROV] [WD wd] [BETAS b1 b2] [EPS e] [STEP t]",
        kCmd);
  }
  UpdateArgs a;
  auto need = [&](int i, int n, std::string_view opt) -> Status {
    if (i + n >= argc) return InvalidArgument("{}: {} needs {} value(s)", kCmd, opt, n);
    return Status::Ok();
  };
  for (int i = 5; i < argc; ++i) {
    const std::string_view word = ArgText(argv[i]);
    if (Is(word, "OPT")) {
      P2P_RETURN_IF_ERROR(need(i, 1, "OPT"));
      if (!a.opt.empty()) return InvalidArgument("{}: OPT given twice", kCmd);
      a.opt = std::string(ArgText(argv[++i]));
      for (char& c : a.opt) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (a.opt != "sgd" && a.opt != "adam" && a.opt != "adamw") {
        return InvalidArgument("{}: unknown OPT '{}'; valid: sgd, adam, adamw", kCmd, a.opt);
      }
    } else if (Is(word, "LR")) {
      P2P_RETURN_IF_ERROR(need(i, 1, "LR"));
      P2P_RETURN_IF_ERROR(SetOnce(a.lr, argv[++i], "LR"));
    } else if (Is(word, "MOMENTUM")) {
      P2P_RETURN_IF_ERROR(need(i, 1, "MOMENTUM"));
      P2P_RETURN_IF_ERROR(SetOnce(a.momentum, argv[++i], "MOMENTUM"));
    } else if (Is(word, "WD")) {
      P2P_RETURN_IF_ERROR(need(i, 1, "WD"));
      P2P_RETURN_IF_ERROR(SetOnce(a.wd, argv[++i], "WD"));
    } else if (Is(word, "EPS")) {
      P2P_RETURN_IF_ERROR(need(i, 1, "EPS"));
      P2P_RETURN_IF_ERROR(SetOnce(a.eps, argv[++i], "EPS"));
    } else if (Is(word, "BETAS")) {
      P2P_RETURN_IF_ERROR(need(i, 2, "BETAS"));
      P2P_RETURN_IF_ERROR(SetOnce(a.beta1, argv[++i], "BETAS b1"));
      P2P_RETURN_IF_ERROR(SetOnce(a.beta2, argv[++i], "BETAS b2"));
    } else if (Is(word, "NESTEROV")) {
      a.nesterov = true;
    } else if (Is(word, "STEP")) {
      P2P_RETURN_IF_ERROR(need(i, 1, "STEP"));
      long long t = 0;
      if (a.step) return InvalidArgument("{}: STEP given twice", kCmd);
      if (rm.StringToLongLong(argv[++i], &t) != kOk || t < 1) {
        return InvalidArgument("{}: STEP '{}' is not an integer >= 1", kCmd, ArgText(argv[i]));
      }
      a.step = t;
    } else {
      return InvalidArgument("{}: unknown option '{}'", kCmd, word);
    }
  }
  if (a.opt.empty()) return InvalidArgument("{}: OPT sgd|adam|adamw is required", kCmd);
  if (!a.lr) return InvalidArgument("{}: LR is required", kCmd);
  return a;
}

// The same ranges ml::Optimizer::Create accepts, so the database never runs a step the process
// would refuse.
Status Validate(const UpdateArgs& a) {
  if (!(*a.lr > 0.0f)) return InvalidArgument("{}: LR must be > 0, got {}", kCmd, *a.lr);
  if (a.wd && !(*a.wd >= 0.0f)) return InvalidArgument("{}: WD must be >= 0, got {}", kCmd, *a.wd);
  if (a.opt == "sgd") {
    if (a.beta1 || a.eps) return InvalidArgument("{}: sgd takes no BETAS or EPS", kCmd);
    if (a.momentum && !(*a.momentum >= 0.0f)) {
      return InvalidArgument("{}: MOMENTUM must be >= 0, got {}", kCmd, *a.momentum);
    }
    if (a.nesterov && !(a.momentum.value_or(0.0f) > 0.0f)) {
      return InvalidArgument("{}: NESTEROV requires MOMENTUM > 0", kCmd);
    }
    return Status::Ok();
  }
  if (a.momentum || a.nesterov)
    return InvalidArgument("{}: {} takes no MOMENTUM or NESTEROV", kCmd, a.opt);
  if (a.eps && !(*a.eps >= 0.0f))
    return InvalidArgument("{}: EPS must be >= 0, got {}", kCmd, *a.eps);
  for (auto [name, beta] : {std::pair{"b1", a.beta1}, std::pair{"b2", a.beta2}}) {
    if (beta && !(*beta >= 0.0f && *beta < 1.0f)) {
      return InvalidArgument("{}: BETAS {} must be in [0, 1), got {}", kCmd, name, *beta);
    }
  }
  return Status::Ok();
}

size_t StateBuffers(const UpdateArgs& a) {
  if (a.opt == "sgd") return a.momentum.value_or(0.0f) > 0.0f ? 1 : 0;
  return 2;
}

// Opens (or, on the first step, creates zeroed) the state blob of `buffers` x n floats and settles
// the step being taken.
Result<FloatsOut> OpenState(const Key& key, size_t buffers, uint32_t n, UpdateArgs& a) {
  const uint64_t count = uint64_t{buffers} * n;
  if (count > store::kMaxBlobFloats) {
    return InvalidArgument("{}: {} state buffers of {} floats exceed the blob limit", kCmd, buffers,
                           n);
  }
  if (key.type() == kKeyTypeEmpty) {
    if (a.step.value_or(1) != 1) {
      return InvalidArgument("{}: STEP {} but state '{}' does not exist (it is created on step 1)",
                             kCmd, *a.step, key.name());
    }
    a.step = 1;
    P2P_ASSIGN_OR_RETURN(FloatsOut out, FloatsOut::Open(key, static_cast<uint32_t>(count),
                                                        /*keep=*/false, "state"));
    std::memset(out.data(), 0, count * sizeof(float));
    return out;
  }
  if (!a.step) {
    return InvalidArgument("{}: state '{}' exists, so STEP t is required (the step being taken)",
                           kCmd, key.name());
  }
  return FloatsOut::Open(key, static_cast<uint32_t>(count), /*keep=*/true, "state");
}

void RunKernel(const UpdateArgs& a, float* p, const float* g, float* state, uint32_t n) {
  if (a.opt == "sgd") {
    const ml::kernels::SgdHyper h{*a.lr, a.momentum.value_or(0.0f), a.wd.value_or(0.0f),
                                  a.nesterov};
    ml::kernels::SgdUpdate(h, a.step.value_or(1), p, g, state, n);
    return;
  }
  ml::kernels::AdamHyper h;  // ml::OptimizerOptions' defaults for what is not given
  h.lr = *a.lr;
  h.beta1 = a.beta1.value_or(0.9f);
  h.beta2 = a.beta2.value_or(0.999f);
  h.eps = a.eps.value_or(1e-8f);
  h.weight_decay = a.wd.value_or(0.0f);
  h.decoupled = a.opt == "adamw";
  ml::kernels::AdamUpdate(h, *a.step, p, g, state, state + n, n);
}

Result<long long> Update(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) {
  P2P_ASSIGN_OR_RETURN(UpdateArgs a, Parse(argv, argc));
  P2P_RETURN_IF_ERROR(Validate(a));
  const std::string_view params_name = ArgText(argv[1]), grad_name = ArgText(argv[2]),
                         state_name = ArgText(argv[4]);
  if (params_name == grad_name || params_name == state_name || grad_name == state_name) {
    return InvalidArgument("{}: params, grad and statekey must be three different keys", kCmd);
  }
  Key grad_key(ctx, argv[2], kRead);
  P2P_ASSIGN_OR_RETURN(FloatsIn grad, ReadBlob(grad_key, "P2P.UPDATE: grad"));
  if (const int64_t bad = FirstNonFinite(grad.data, grad.count); bad >= 0) {
    return InvalidArgument("{}: grad '{}' holds NaN or infinity at index {}; nothing applied", kCmd,
                           grad_name, bad);
  }
  Key params_key(ctx, argv[1], kRead | kWrite);
  {
    // Check the parameters before creating any state.
    P2P_ASSIGN_OR_RETURN(FloatsIn params, ReadBlob(params_key, "P2P.UPDATE: params"));
    if (params.count != grad.count) {
      return InvalidArgument("{}: params '{}' holds {} floats but grad '{}' holds {}", kCmd,
                             params_name, params.count, grad_name, grad.count);
    }
  }
  const uint32_t n = grad.count;
  Key state_key(ctx, argv[4], kRead | kWrite);
  std::optional<FloatsOut> state;
  if (const size_t buffers = StateBuffers(a); buffers > 0) {
    P2P_ASSIGN_OR_RETURN(state, OpenState(state_key, buffers, n, a));
  }
  P2P_ASSIGN_OR_RETURN(FloatsOut params,
                       FloatsOut::Open(params_key, n, /*keep=*/true, "P2P.UPDATE: params"));
  RunKernel(a, params.data(), grad.data, state ? state->data() : nullptr, n);
  params.Commit();
  if (state) state->Commit();
  return a.step.value_or(1);
}

}  // namespace

int UpdateCommand(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) {
  if (argc < 9) return rm.WrongArity(ctx);
  return Reply(ctx, [&] { return Update(ctx, argv, argc); });
}

}  // namespace p2p::redis_module
