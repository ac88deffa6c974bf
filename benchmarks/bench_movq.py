"""Forward+backward throughput and peak memory of MoVQ: SBER-MoVQGAN 67M at 256 px, batch 1, and the lesson
configs of each profile (against the VQGAN decoder at the same config, i.e. the cost of SpatialNorm).

    OMP_NUM_THREADS=1 python benchmarks/bench_movq.py             # CPU (the 67M rows take a few minutes)
    python benchmarks/bench_movq.py --device cuda                 # GPU: fp32, then AMP + channels_last
    python benchmarks/bench_movq.py --skip-67m                    # lesson configs only

Method and memory measurement as in ``bench_vqgan.py`` (fresh subprocess per configuration on the CPU; RSS
high-water mark minus the resident set before the passes; ``max_memory_allocated`` on CUDA).

Against the official SBER-MoVQGAN code (same weights, outputs compared): ``bench_official.py``, which needs a
local ``git clone https://github.com/ai-forever/MoVQGAN`` (``--official PATH``).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vqgan import Table, measure_isolated  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from minimovq.movq import CONFIGS  # noqa: E402

# (config, profile that uses it, image size, batch size): as in notebooks/src/04_movq.py
LESSON = (("tiny", "quick", 32, 8), ("tiny", "cpu", 32, 16), ("small", "gpu", 64, 32))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--iters", type=int, default=None, help="timed passes; default: 2 on the CPU, 10 on a GPU")
    p.add_argument("--skip-67m", action="store_true", help="only the lesson configs")
    p.add_argument("--profiles", nargs="*", default=None, help="lesson configs of these profiles only "
                   "(quick, cpu, gpu); default: all")
    a = p.parse_args()
    cpu = a.device == "cpu"
    iters = a.iters or (2 if cpu else 10)
    print(f"device={a.device} torch={torch.__version__} threads={torch.get_num_threads()} iters={iters}")

    if not a.skip_67m:
        spec = {"model": "movq", "config": "67M"}
        t = Table("SBER-MoVQGAN 67M, forward+backward at 256 px")
        t.row("MoVQ 67M fp32, batch 1", measure_isolated(spec, 256, 1, iters, a.device))
        if not cpu:
            t.row("MoVQ 67M AMP + channels_last, batch 1",
                  measure_isolated(spec, 256, 1, iters, a.device, amp=True, channels_last=True))
            t.row("MoVQ 67M AMP + channels_last, batch 8",
                  measure_isolated(spec, 256, 8, iters, a.device, amp=True, channels_last=True))

    t = Table("Lesson configs, forward+backward" + ("" if cpu else " (AMP + channels_last)"))
    for name, profile, size, batch in LESSON:
        if a.profiles and profile not in a.profiles:
            continue
        # the VQGAN baseline is built from MoVQ's lesson config: the same encoder, codebook and decoder widths
        for label, spec in (("VQGAN decoder", {"model": "vqgan", "kwargs": CONFIGS[name]}),
                            ("MoVQ", {"model": "movq", "config": name}),
                            ("MoVQ groups=4", {"model": "movq", "config": name, "overrides": {"groups": 4}})):
            r = measure_isolated(spec, size, batch, max(iters, 3), a.device, amp=not cpu, channels_last=not cpu)
            t.row(f"{name} ({profile}) {size}px b{batch}: {label}", r)

if __name__ == "__main__":
    main()
