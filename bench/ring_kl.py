"""Quality per CPU second on a known density: flowlib against zuko on the ring of 8 Gaussians.

The ring (flowlib.data.ring_of_gaussians: 8 components on a circle of radius 2, std 0.2)
has an exact log-density, so the forward KL of a fitted model q,

    KL(p || q) = E_p[log p(x) - log q(x)]    (nats),

is estimated on 20,000 fresh samples from p (fixed seed, the same points for every model).
Every model trains by maximum likelihood with Adam on fresh minibatches from p for the
same wall-clock budget on the same number of torch threads; training stops at the first
step that ends after the budget, and the KL evaluation is not timed. With ``--steps N``
every model instead trains for exactly N steps (the same minibatches): a measure of
quality per step that machine load cannot change (under load the wall-clock budget buys
very different step counts), reported beside the steps/s each model ran at.

"matched" rows use the same sizes for both libraries (transforms, hidden widths, batch,
lr, optimiser, budget). "tuned" rows change one or more settings, named in the row.

Run: `python bench/ring_kl.py [--seconds 60 | --steps N] [--threads 2] [--only NAME ...] [--json PATH]`.
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from bench_common import emit, fmt
from flowlib.flows.autoregressive import maf, mixture_cdf_flow_2d
from flowlib.flows.coupling import realnvp
from flowlib.data import ring_of_gaussians, ring_of_gaussians_log_prob
from flowlib.flows.splines import nsf_autoregressive, nsf_coupling

N_EVAL = 20_000
EVAL_SEED = 12345
TRANSFORMS = 5
HIDDEN = (64, 64)
BATCH = 512
LR = 1e-3


class ZukoAdapter(torch.nn.Module):
    """zuko's lazy flow (``flow()`` builds the distribution) behind ``log_prob``."""

    def __init__(self, lazy):
        super().__init__()
        self.lazy = lazy

    def log_prob(self, x):
        return self.lazy().log_prob(x)


def _zuko(kind: str, **kw):
    import zuko

    return ZukoAdapter(getattr(zuko.flows, kind)(2, transforms=TRANSFORMS, hidden_features=HIDDEN, **kw))


# name -> (library, setting, builder, options); options: lr, schedule ("constant" or
# "cosine": lr * (1 + cos(pi * elapsed / budget)) / 2, by wall-clock fraction).
MODELS = {
    "flowlib MAF": ("flowlib", "matched", lambda: maf(2, TRANSFORMS, HIDDEN), {}),
    "zuko MAF": ("zuko", "matched", lambda: _zuko("MAF"), {}),
    "flowlib RealNVP": ("flowlib", "matched", lambda: realnvp(2, TRANSFORMS, HIDDEN), {}),
    "zuko RealNVP": ("zuko", "matched", lambda: _zuko("RealNVP"), {}),
    "zuko NSF": ("zuko", "matched", lambda: _zuko("NSF"), {}),
    # zuko's NSF is autoregressive with 8 bins on [-5, 5]: the matched flowlib model is nsf_autoregressive
    "flowlib NSF": ("flowlib", "matched", lambda: nsf_autoregressive(2, TRANSFORMS, n_bins=8, bound=5.0, hidden=HIDDEN), {}),
    "flowlib NSF coupling": ("flowlib", "matched sizes; coupling instead of autoregressive (8 bins on [-5, 5])",
                             lambda: nsf_coupling(2, TRANSFORMS, n_bins=8, bound=5.0, hidden=HIDDEN), {}),
    "flowlib MAF, cosine lr": ("flowlib", "tuned: lr 3e-3 with cosine decay to 0 over the budget",
                                lambda: maf(2, TRANSFORMS, HIDDEN), {"lr": 3e-3, "schedule": "cosine"}),
    "flowlib MAF, 10 layers, cosine lr": ("flowlib", "tuned: 10 transforms, lr 3e-3 with cosine decay to 0 over the budget",
                                           lambda: maf(2, 10, HIDDEN), {"lr": 3e-3, "schedule": "cosine"}),
    "flowlib mixture-CDF, matched training": ("flowlib", "tuned model only: mixture_cdf_flow_2d(8 components, hidden (64, 64)); "
                                              "training as matched", lambda: mixture_cdf_flow_2d(8, HIDDEN), {}),
    "flowlib mixture-CDF": ("flowlib", "tuned: mixture_cdf_flow_2d(8 components, hidden (64, 64)), lr 3e-3 cosine",
                            lambda: mixture_cdf_flow_2d(8, HIDDEN), {"lr": 3e-3, "schedule": "cosine"}),
}


class Diverged(FloatingPointError):
    def __init__(self, step: int, seconds: float, loss: float):
        super().__init__(f"loss became {loss} at step {step}")
        self.step, self.seconds = step, seconds


def train(model, seconds: float, lr: float, schedule: str, seed: int, max_steps: int | None = None) -> tuple[int, float]:
    """Adam on fresh ring minibatches until the budget is spent (``seconds`` of wall clock,
    or exactly ``max_steps`` steps when given); returns (steps, seconds). Raises
    :class:`Diverged` on a non-finite loss."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps, start = 0, time.perf_counter()
    elapsed = 0.0
    while (steps < max_steps) if max_steps else (elapsed < seconds):
        if schedule == "cosine":
            done = steps / max_steps if max_steps else elapsed / seconds
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
        x = ring_of_gaussians(BATCH, generator=gen)
        loss = -model.log_prob(x).mean()
        if not torch.isfinite(loss):
            raise Diverged(steps, time.perf_counter() - start, loss.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        elapsed = time.perf_counter() - start
    return steps, elapsed


@torch.no_grad()
def kl_to_ring(model) -> tuple[float, float]:
    """Monte Carlo KL(p || q) on N_EVAL fixed samples of p, and its standard error."""
    x = ring_of_gaussians(N_EVAL, generator=torch.Generator().manual_seed(EVAL_SEED))
    diff = ring_of_gaussians_log_prob(x.double()) - model.log_prob(x).double()
    return diff.mean().item(), (diff.std() / math.sqrt(N_EVAL)).item()


def run(names, seconds: float, seed: int = 0, max_steps: int | None = None):
    for name in names:
        lib, setting, build, opts = MODELS[name]
        torch.manual_seed(seed)
        model = build()
        model.train()
        try:
            steps, took = train(model, seconds, opts.get("lr", LR), opts.get("schedule", "constant"), seed, max_steps)
        except Diverged as exc:  # reported as a row: a diverging setting is a result, not a crash
            yield name, setting, exc.step, exc.seconds, None, None, str(exc)
            continue
        model.eval()
        kl, se = kl_to_ring(model)
        yield name, setting, steps, took, kl, se, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="training budget per model, wall clock (default 60)")
    parser.add_argument("--steps", type=int, help="train every model for exactly this many steps instead of --seconds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=sorted(MODELS), metavar="NAME", help="models to run (default all)")
    parser.add_argument("--json", help="also write the table as JSON here (for bench/run.py)")
    args = parser.parse_args()
    if args.seconds <= 0 or args.threads < 1 or (args.steps is not None and args.steps < 1):
        parser.error("--seconds and --steps must be positive and --threads at least 1")
    torch.set_num_threads(args.threads)
    rows = []
    for name, setting, steps, took, kl, se, error in run(args.only or list(MODELS), args.seconds, args.seed, args.steps):
        kl_cell = f"diverged: {error}" if error else fmt(kl, ".4f")
        rows.append([name, setting, fmt(steps), fmt(took, ".1f"), fmt(steps / took, ".1f"), kl_cell, fmt(se, ".4f")])
        print(f"  {name}: {steps} steps in {took:.1f} s, " + (kl_cell if error else f"KL {kl:.4f} +- {se:.4f} nats"), flush=True)
    budget = f"{args.steps:,} steps per model (the same minibatches)" if args.steps else f"Budget {args.seconds:g} s per model"
    section = {
        "title": ("Ring of 8 Gaussians: KL(p || q) after a fixed number of steps" if args.steps
                  else "Ring of 8 Gaussians: KL(p || q) after a fixed wall-clock budget"),
        "intro": (f"{budget}, {args.threads} torch threads, batch {BATCH}, Adam lr {LR:g} "
                  f"unless the row says otherwise, {TRANSFORMS} transforms with hidden {HIDDEN} (MAF, RealNVP, NSF), "
                  f"KL on {N_EVAL:,} fresh samples (seed {EVAL_SEED}); s.e. = Monte Carlo standard error."),
        "columns": ["model", "setting", "steps", "seconds", "steps/s", "KL (nats)", "s.e."],
        "rows": rows,
    }
    emit(section, args.json)


if __name__ == "__main__":
    main()
