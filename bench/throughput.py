"""Throughput: flowlib / zuko time ratios of log_prob and sample for matched MAF and RealNVP.

Both libraries get the same architecture (5 transforms, hidden (64, 64), ReLU, alternating
orders / masks, freshly initialised with the same torch seed) in 2-D and 8-D. Each
repeat times, interleaved, flowlib then zuko on the same batch (log_prob) or the same
sample size, under ``torch.no_grad()``; the table gives the medians over repeats, their
ratio flowlib / zuko (below 1: flowlib is faster), and the ratio of the fastest repeats,
which is less sensitive to other jobs on a shared machine (under load, 2-thread runs slow
down by up to 20x at random, for both libraries alike). Fresh flows are the identity map
for both libraries (zero-initialised last layers), so the cost measured is the
architecture's, not that of any trained weights.

Run: `python bench/throughput.py [--batch 10000] [--repeats 15] [--threads 2] [--json PATH]`.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench_common import emit, fmt
from flowlib.flows.autoregressive import maf
from flowlib.flows.coupling import realnvp

TRANSFORMS = 5
HIDDEN = (64, 64)


def builders(kind: str, d: int):
    import zuko

    if kind == "MAF":
        return (lambda: maf(d, TRANSFORMS, HIDDEN)), (lambda: zuko.flows.MAF(d, transforms=TRANSFORMS, hidden_features=HIDDEN))
    return (lambda: realnvp(d, TRANSFORMS, HIDDEN)), (lambda: zuko.flows.RealNVP(d, transforms=TRANSFORMS, hidden_features=HIDDEN))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@torch.no_grad()
def measure(kind: str, d: int, batch: int, repeats: int):
    build_f, build_z = builders(kind, d)
    torch.manual_seed(0)
    f = build_f().eval()
    torch.manual_seed(0)
    z = build_z().eval()
    x = torch.randn(batch, d, generator=torch.Generator().manual_seed(1))
    ops = {
        "log_prob": (lambda: f.log_prob(x), lambda: z().log_prob(x)),
        "sample": (lambda: f.sample(batch), lambda: z().sample((batch,))),
    }
    for op, (run_f, run_z) in ops.items():
        run_f(), run_z()  # warm-up
        tf, tz = [], []
        for _ in range(repeats):
            tf.append(timed(run_f))
            tz.append(timed(run_z))
        mf, mz = statistics.median(tf), statistics.median(tz)
        yield kind, d, op, mf * 1e3, mz * 1e3, mf / mz, min(tf) / min(tz)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the table as JSON here (for bench/run.py)")
    args = parser.parse_args()
    if args.batch < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--batch, --repeats and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    rows = []
    for kind in ("MAF", "RealNVP"):
        for d in (2, 8):
            for kind_, d_, op, mf, mz, ratio, ratio_min in measure(kind, d, args.batch, args.repeats):
                rows.append([kind_, fmt(d_), op, fmt(mf, ".2f"), fmt(mz, ".2f"), fmt(ratio, ".2f"), fmt(ratio_min, ".2f")])
    section = {
        "title": f"Throughput: flowlib / zuko on a batch of {args.batch:,}",
        "intro": (f"{TRANSFORMS} transforms, hidden {HIDDEN}, {args.threads} torch threads, median of {args.repeats} "
                  "interleaved repeats (ms columns and first ratio: medians; last ratio: fastest repeats), no_grad; "
                  "ratio < 1 means flowlib is faster."),
        "columns": ["flow", "D", "op", "flowlib (ms)", "zuko (ms)", "ratio flowlib/zuko", "ratio of fastest"],
        "rows": rows,
    }
    emit(section, args.json)


if __name__ == "__main__":
    main()
