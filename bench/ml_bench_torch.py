#!/usr/bin/python3
"""PyTorch's side of ml_bench for the studies' CNNs: training samples/s (forward, backward, SGD
step) at batch 32 on 3x32x32 random input, for 1 and 2 threads, with the same architectures as
p2ptrain's --model names (tests/ml/make_zoo_reference.py builds them). Needs Debian's
python3-torch and python3-torchvision; run with /usr/bin/python3 from the repository root:
  /usr/bin/python3 bench/ml_bench_torch.py [seconds per case, default 5] [models,...] [threads,...]
"""
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "ml"))
from make_zoo_reference import build  # noqa: E402

BATCH = 32


def samples_per_s(name, threads, seconds):
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = build(name)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(BATCH, 3, 32, 32)
    y = torch.randint(0, 10, (BATCH,))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(2):  # warm-up: oneDNN primitive creation
        step()
    steps, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return BATCH * steps / wall, BATCH * steps / cpu


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    names = sys.argv[2].split(",") if len(sys.argv) > 2 else [
        "mobilenet_v3_small", "resnet18", "mobilenet", "mobilenet_v2"]
    threads_list = [int(t) for t in sys.argv[3].split(",")] if len(sys.argv) > 3 else [1, 2]
    print(f"torch {torch.__version__}, batch {BATCH}, 3x32x32")
    for name in names:
        for threads in threads_list:
            wall, cpu = samples_per_s(name, threads, seconds)
            # samples per CPU second: less sensitive than wall time to other load on the machine
            print(f"{name:20s} threads {threads}: {wall:8.1f} samples/s, {cpu:8.1f} per cpu-s",
                  flush=True)


if __name__ == "__main__":
    main()
