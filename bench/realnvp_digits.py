"""Train flowlib's multi-scale RealNVP on the 8x8 digits for a wall-clock budget and report
test bits/dim next to the per-pixel histogram baseline.

    python bench/realnvp_digits.py                 # 5 minutes (the issue's target budget)
    python bench/realnvp_digits.py --seconds 30    # a quick run

Setup as in the book chapter 04-realnvp: default ``realnvp_image``, uniform dequantization,
Adam lr 1e-3, batch 128. Training stops at the first step that ends after the budget; the
evaluation afterwards is not counted. Nothing is saved (no checkpoints).
"""
from __future__ import annotations

import argparse
import math
import time

import torch

import flowlib
from flowlib.flows.coupling import realnvp_image
from flowlib.data import DIGITS_N_BINS, load_digits_split
from flowlib.flows.dequantization import dequantized_bits_per_dim, dequantized_log_likelihood, histogram_baseline_bpd


@torch.no_grad()
def test_bpd(flow, test_int, n_samples: int, seed: int) -> float:
    flow.eval()
    gen = torch.Generator(device=test_int.device).manual_seed(seed)
    value = dequantized_bits_per_dim(flow, test_int, DIGITS_N_BINS, n_samples=n_samples, generator=gen).mean().item()
    flow.train()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="training budget, wall clock (default 300)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--eval-every", type=float, default=60.0, help="print test bits/dim every so many seconds")
    parser.add_argument("--eval-samples", type=int, default=4, help="dequantization draws for the final evaluation")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    dev = flowlib.device()
    flowlib.seed_everything(args.seed)
    train_int, test_int = load_digits_split(seed=0)
    baseline = histogram_baseline_bpd(train_int, test_int, DIGITS_N_BINS)
    train_int, test_int = train_int.to(dev), test_int.to(dev)

    flow = realnvp_image(shape=(1, 8, 8)).to(dev)
    opt = torch.optim.Adam(flow.parameters(), lr=args.lr)
    batches = torch.Generator().manual_seed(args.seed + 1)
    n_params = sum(p.numel() for p in flow.parameters())
    print(f"device {dev}, {n_params} parameters, budget {args.seconds:.0f} s, "
          f"histogram baseline {baseline:.4f} bits/dim (uniform: {math.log2(DIGITS_N_BINS):.4f})", flush=True)

    start = time.perf_counter()
    next_eval, step, train_time = args.eval_every, 0, 0.0
    while train_time < args.seconds:
        idx = torch.randint(len(train_int), (args.batch_size,), generator=batches).to(dev)
        loss = -dequantized_log_likelihood(flow, train_int[idx], DIGITS_N_BINS).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        train_time = time.perf_counter() - start
        if train_time >= next_eval:
            pause = time.perf_counter()
            print(f"  {train_time:6.0f} s  step {step:6d}  test {test_bpd(flow, test_int, 1, 123):.4f} bits/dim", flush=True)
            next_eval += args.eval_every
            start += time.perf_counter() - pause   # evaluation time does not count against the budget

    final = test_bpd(flow, test_int, args.eval_samples, 456)
    print(f"trained {train_time:.0f} s, {step} steps ({step / max(train_time, 1e-9):.1f} steps/s)")
    print(f"test bits/dim {final:.4f}  (dequantization bound, {args.eval_samples} draws)")
    print(f"histogram baseline {baseline:.4f}  margin {baseline - final:+.4f} bits/dim "
          f"({'beats' if final < baseline else 'does NOT beat'} the baseline)")


if __name__ == "__main__":
    main()
