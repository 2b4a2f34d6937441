// Allocator settings for a process that handles the same large buffers step after step
// (gradients, batches, messages of megabytes).
#pragma once

namespace p2p {

// glibc serves blocks above its mmap threshold (128 KiB, adapting up to 32 MiB) with fresh
// mmaps and gives freed heap tops back to the kernel; every step then page-faults its multi-MB
// buffers in again (measured: ~15k faults and 38 ms of system time per 4-peer 1M-float round
// in-process, half the round). This keeps blocks up to 32 MiB on the heap and freed memory in
// the process for reuse: a process's footprint stays at its peak, which for a trainer is its
// steady state. Call first thing in main(); MALLOC_* environment variables still override.
void KeepFreedMemoryForReuse();

}  // namespace p2p
