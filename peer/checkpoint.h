// Checkpoints: everything needed to resume training bit-exactly after epoch `epoch`.
//
// File format (little-endian), written atomically (temp file + fsync + rename) so a crash leaves
// either the previous checkpoint or the new one, never a torn file:
//   "P2PCKPT1" | u64 meta_len | meta JSON | u64 n | n float32 params
//   | u32 k | k x (u64 len | len float32 optimizer buffer)
//   | s x (u64 len | len float32 sync buffer)        (s = meta "sync_buffers", 0 when absent)
//   [| u64 b | b float32 model buffers]              (when meta "model_buffers" is true)
//   | u32 crc32 of all preceding bytes
// meta: {"epoch", "model", "num_params", "config", "optimizer": {step, lr}, "plateau": {...},
//        "early_stopping": {...}, "sync_buffers",
//        "model_buffers"}
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "ml/optimizer.h"

namespace p2p::peer {

struct Checkpoint {
  int epoch = 0;       // last completed epoch (1-based)
  std::string model;   // model name, checked on resume
  std::string config;  // fingerprint of the run's configuration, checked on resume
  std::vector<float> params;
  // The model's BatchNorm running statistics (ml::Model::Buffers()); empty without BatchNorm.
  std::vector<float> model_buffers;
  ml::Optimizer::State optimizer;
  ml::ReduceLrOnPlateau::State plateau;
  ml::EarlyStopping::State early_stopping;
  // What the peer's sync strategy needs to continue bit-exactly: a codec's error-feedback
  // residual and momentum-correction velocity (sync::Strategy::SaveState). Empty for `train`.
  std::vector<std::vector<float>> sync_state;
  nlohmann::json extra = nlohmann::json::object();  // free-form, e.g. the run id
};

// Path of the checkpoint file inside `dir`.
std::string CheckpointPath(const std::string& dir);
Status SaveCheckpoint(const std::string& dir, const Checkpoint& ckpt);
// kNotFound if there is no checkpoint; kDataLoss naming the file if it is corrupt or truncated.
Result<Checkpoint> LoadCheckpoint(const std::string& dir);
// The file's bytes, in memory: what a member sends a rejoining peer (docs/membership.md).
std::string SerializeCheckpoint(const Checkpoint& ckpt);
// Parses bytes in the file format (checksum, bounded lengths) as untrusted input; kDataLoss
// naming `what` (the file, or the sender) if they are corrupt or truncated.
Result<Checkpoint> ParseCheckpoint(std::string_view data, const std::string& what);

// Checks `dir` (--checkpoint-dir; empty: none) before training starts: it is created if missing
// and must take a new file (probed by creating and removing one, which also catches read-only
// file systems and paths under a regular file, where even root cannot write): else kIoError
// naming it. A checkpoint already there is kept unless `resume` (continue from it) or
// `overwrite` (replace it): else kInvalidArgument saying to pass one of them.
Status CheckCheckpointDir(const std::string& dir, bool resume, bool overwrite);

}  // namespace p2p::peer
