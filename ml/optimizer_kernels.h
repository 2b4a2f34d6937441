// The optimizers' arithmetic over raw buffers, with no state of its own: one update of n floats.
//
// ml/optimizer.cc (the Optimizer classes: validation, step count, state buffers) calls these, and
// the Redis module (redis_module/) compiles this same source into p2ptrain_redis.so, so that
// P2P.UPDATE inside the database gives bitwise the same parameters as Optimizer::Step in the
// process. Change the arithmetic here and both follow; never copy it.
//
// Buffers may sit at any float-aligned address (Eigen Maps, unaligned): elementwise math, so the
// address never changes a result. params, grads and the state buffers must not overlap.
#pragma once

#include <cstddef>
#include <cstdint>

namespace p2p::ml::kernels {

// torch.optim.SGD with dampening 0.
struct SgdHyper {
  float lr = 0.01f;
  float momentum = 0.0f;  // 0: no buffer
  float weight_decay = 0.0f;
  bool nesterov = false;
};
// `step` is the step being taken (1 on the first update: the momentum buffer then becomes a copy
// of the gradient, as in torch). `buf` holds n floats when momentum > 0 and may be null otherwise.
void SgdUpdate(const SgdHyper& h, int64_t step, float* params, const float* grads, float* buf,
               size_t n);

// torch.optim.Adam (weight decay as L2 in the gradient) or, with `decoupled`, torch.optim.AdamW.
struct AdamHyper {
  float lr = 0.001f;
  float beta1 = 0.9f, beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  bool decoupled = false;
};
// `step` >= 1 is the step being taken (the bias corrections use it); m and v hold n floats each.
void AdamUpdate(const AdamHyper& h, int64_t step, float* params, const float* grads, float* m,
                float* v, size_t n);

// torch.optim.RMSprop, centered=False. `buf` (n floats) is used only when momentum > 0.
struct RmsPropHyper {
  float lr = 0.01f;
  float alpha = 0.99f;
  float eps = 1e-8f;
  float momentum = 0.0f;
  float weight_decay = 0.0f;
};
void RmsPropUpdate(const RmsPropHyper& h, float* params, const float* grads, float* square_avg,
                   float* buf, size_t n);

// torch.optim.Adagrad with lr_decay 0, initial_accumulator_value 0 and eps 1e-10.
void AdagradUpdate(float lr, float weight_decay, float* params, const float* grads, float* sum,
                   size_t n);

}  // namespace p2p::ml::kernels
