#!/usr/bin/python3
"""Times torch.distributed's gloo all-reduce: W local processes on loopback, P float32 each.

The anchor for bench/sync_vs_gloo.sh: the same W and P as our sync round, on the same machine, in
the same invocation, so a printed ratio compares like with like. One round = all_reduce(SUM) of
the P floats, then a division by W (our rounds return the average, so gloo's does too). Ranks
line up on a barrier before each round; a round's time is the slowest rank's (MAX all-reduce of
the per-rank times, outside the timed part). Prints one line per (W, P):

  gloo W=4 P=1000000 rounds=30 median_ms=7.81 min_ms=7.2 max_ms=9.9 threads=1

Usage: gloo_allreduce.py [--world 4] [--sizes 1000000,10000000] [--rounds N] [--threads 1]
Needs Debian's python3-torch (run with /usr/bin/python3; scripts/setup.sh does not install it).
"""
import argparse
import os
import socket
import statistics
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rounds_for(p, asked):
    if asked:
        return asked
    # About as many rounds as bench/sync_round_bench.cc times per size.
    return 60 if p <= 100_000 else 30 if p <= 1_000_000 else 10 if p <= 10_000_000 else 3


def worker(rank, world, port, sizes, asked_rounds, threads, out):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    for p in sizes:
        # Distinct, well-scaled values per rank, like the C++ benchmark's.
        t = torch.arange(p, dtype=torch.float32).remainder_(997).mul_(0.001).sub_(0.25 * rank)
        rounds = rounds_for(p, asked_rounds)
        times = []
        for i in range(rounds + 2):  # 2 untimed warm-up rounds
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t.div_(world)
            elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
            if i >= 2:
                times.append(elapsed.item())
        if rank == 0:
            ms = [x * 1e3 for x in times]
            out.put(f"gloo W={world} P={p} rounds={rounds} median_ms={statistics.median(ms):.3f} "
                    f"min_ms={min(ms):.3f} max_ms={max(ms):.3f} threads={threads}")
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", type=int, default=4)
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--rounds", type=int, default=0, help="timed rounds per size (0: by size)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = ap.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        sys.exit(f"gloo_allreduce.py: --sizes must be comma-separated integers, got {args.sizes!r}")
    if args.world < 2 or not sizes or min(sizes) < 1:
        sys.exit("gloo_allreduce.py: need --world >= 2 and positive --sizes")
    try:
        import torch.multiprocessing as mp
    except ImportError:
        sys.exit("gloo_allreduce.py: no torch; install Debian's python3-torch "
                 "(apt-get install python3-torch) and run with /usr/bin/python3")
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=worker, args=(r, args.world, port, sizes, args.rounds,
                                              args.threads, out)) for r in range(args.world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    failed = [r for r, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        sys.exit(f"gloo_allreduce.py: ranks {failed} failed (see their errors above)")
    while not out.empty():
        print(out.get(), flush=True)


if __name__ == "__main__":
    main()
