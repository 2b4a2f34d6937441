// The body of a function process (`p2ptrain function`): read tasks from a file descriptor,
// compute each gradient at the task's parameters, write one result per task. A cold invocation is
// one task then end of input; a warm process serves tasks until its input closes.
#pragma once

#include "common/status.h"

namespace p2p::offload {

// Serves tasks from `in_fd` until end of input, writing results to `out_fd`. A task that cannot
// be computed (unknown model, unreadable parameters) gets a result with `error` set. Returns an
// error only if the input stream itself is corrupt or the output cannot be written.
Status ServeTasks(int in_fd, int out_fd);

}  // namespace p2p::offload
