// reduce-scatter-average with a lossy codec (--strategy reduce-scatter-average --compression C;
// the uncompressed run is sync/reduce_scatter_average.h). Member i of the view owns slice i,
// [P*i/W, P*(i+1)/W), as there. Per round:
//   1. scatter: each peer encodes slice j of its gradient with the run's codec (its own
//      payload per slice, seeded per sender, round and slice) and sends it only to owner j. The
//      owner's own slice is not encoded: only the owner uses it, so it stays exact;
//   2. reduce: the owner decodes the W-1 slices (refusing any whose codec or size is not the
//      run's), and combines them with its own in rank order with the run's coordinatewise rule —
//      the same code as the uncompressed reduce-scatter;
//   3. gather: the owner encodes its averaged slice once more (same codec, seeded by the owner
//      and round) and broadcasts that payload; every peer, the owner too, decodes the W payloads
//      into the result, so every peer applies bitwise the same update.
// Each coordinate is therefore quantised twice (docs/codecs.md, "Codecs on reduce-scatter").
// Error feedback is kept per stage where the codec has it: the scatter residual over the whole
// gradient (what this peer's slice payloads did not carry), and the gather residual over the
// owned slice (what the averaged payload did not carry), as in DoubleSqueeze (Tang et al. 2019).
// topk's momentum correction runs in the scatter stage only: the gather stage encodes averaged
// velocities, which must not be accumulated a second time. Both stages' state is checkpointed
// (SaveState).
#pragma once

#include <memory>
#include <vector>

#include "sync/rules/rule.h"
#include "sync/sliced_encoder.h"
#include "sync/strategy.h"

namespace p2p::sync {

class ReduceScatterCodec final : public Strategy {
 public:
  // options.codec must be a valid codec and options.rule a coordinatewise rule: MakeStrategy
  // checks both and takes this class for every codec but "none" (an invalid codec or rule here is
  // a P2P_CHECK).
  ReduceScatterCodec(Mailbox& mailbox, StrategyOptions options);
  Status Average(Round round, uint32_t samples, std::span<float> grad) override;
  // Scatter residual and velocity, gather residual and velocity (each empty until used; the
  // gather velocity always, the gather stage has no momentum), as sync/strategy_util saves an
  // encoder; nothing when the codec keeps no error feedback.
  std::vector<std::vector<float>> SaveState() const override;
  // Also takes allgather-average's (residual, velocity): its residual is the same per-coordinate
  // quantity as the scatter residual, so a run can switch strategy at a resume.
  Status LoadState(std::vector<std::vector<float>> state) override;

 private:
  struct Slice {
    size_t begin = 0, len = 0;
  };
  // The view's layout for this round: others_, position_.
  void Layout();
  Slice SliceOf(int rank, size_t p) const;
  Status Scatter(Round round, uint32_t samples, std::span<const float> grad);
  Result<uint64_t> Reduce(Round round, uint32_t samples, size_t p, broker::Deadline deadline,
                          const std::string& what);
  Status Gather(Round round, uint64_t total, std::span<float> grad, broker::Deadline deadline,
                const std::string& what);
  // The envelope fields of `codec` for a body of samples + payload.
  broker::Envelope Encoded(broker::MessageType type, Round round, const codecs::Codec& codec,
                           broker::Bytes body) const;
  Status CheckCodec(const broker::Envelope& e, const codecs::Codec& codec, int from,
                    const char* what) const;

  Mailbox& mailbox_;
  StrategyOptions options_;
  std::unique_ptr<const rules::Rule> rule_;  // coordinatewise (MakeStrategy checks)
  SlicedEncoder scatter_;                    // the run's codec, momentum included
  SlicedEncoder gather_;                     // the run's codec without momentum
  std::vector<int> others_;
  std::vector<size_t> position_;  // rank -> member index in the view
  std::vector<float> theirs_, averaged_, decoded_;
  broker::Bytes body_;
};

}  // namespace p2p::sync
