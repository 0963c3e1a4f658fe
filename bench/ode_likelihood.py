"""ODE likelihood accuracy against cost: flowlib's fixed-step RK4 vs scipy's adaptive RK45.

With the exact score of a 2-D Gaussian mixture (flowlib.GaussianMixture), the
probability-flow ODE log-likelihood must equal the analytic log-density. For VE and VP
SDEs this prints, per solver setting, the number of score evaluations (NFE) and the
largest error in nats over a batch of test points:

* "solver error": against the exact log p_eps, with the exact p_T as terminal density,
  so only the ODE solver is measured;
* "end to end": against the data density log p_0, with the SDE's prior as terminal
  density, as a trained model would be used.

Goal (issue "SDE reverse sampling and probability-flow ODE likelihood"): at most 1e-3
nats of error at 100 NFE or fewer. Run: `python bench/ode_likelihood.py [--points N]`.
"""
from __future__ import annotations

import argparse
import time

import torch

from flowlib.gmm import GaussianMixture
from flowlib.ode import ode_log_prob
from flowlib.sde import VESDE, VPSDE

EPS = 1e-5


def mixture() -> GaussianMixture:
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]], dtype=torch.float64)
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), means,
                           stds=torch.tensor([0.5, 0.7, 0.4], dtype=torch.float64))


def rows(sde, name: str, x: torch.Tensor, gm: GaussianMixture):
    score = lambda v, t: gm.score_at(v, t, sde)  # noqa: E731
    exact_T = lambda z: gm.log_prob_at(z, sde.T, sde)  # noqa: E731
    truth_eps, truth_0 = gm.log_prob_at(x, EPS, sde), gm.log_prob(x)
    settings = [("rk4", dict(n_steps=n)) for n in (5, 10, 25, 50, 100)]
    settings += [("rk4", dict(n_steps=n, time_power=2.0)) for n in (10, 25, 50)]
    settings += [("rk45", dict(rtol=tol, atol=tol)) for tol in (1e-3, 1e-4, 1e-5, 1e-7)]
    for method, kw in settings:
        start = time.perf_counter()
        logp, nfe = ode_log_prob(score, sde, x, method=method, eps=EPS, terminal_log_prob=exact_T, **kw)
        seconds = time.perf_counter() - start
        logp_prior, _ = ode_log_prob(score, sde, x, method=method, eps=EPS, **kw)
        if method == "rk4":
            setting = f"{kw['n_steps']} steps" + (f", t ~ (i/n)^{kw['time_power']:g}" if "time_power" in kw else "")
        else:
            setting = f"tol {kw['rtol']:.0e}"
        yield (name, method, setting, nfe, (logp - truth_eps).abs().max().item(),
               (logp_prior - truth_0).abs().max().item(), seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    gm = mixture()
    x = gm.sample(args.points, generator=torch.Generator().manual_seed(1))
    print(f"| SDE | solver | setting | NFE | solver error (nats) | end to end (nats) | seconds |")
    print("|---|---|---|---:|---:|---:|---:|")
    best = {}
    for sde, name in ((VPSDE(), "VP"), (VESDE(sigma_max=10.0), "VE (sigma_max 10)")):
        for row in rows(sde, name, x, gm):
            print("| {} | {} | {} | {} | {:.2e} | {:.2e} | {:.2f} |".format(*row))
            if row[3] <= 100:
                key = (row[0], row[1] + (" (t ~ (i/n)^2)" if "^2" in row[2] else ""))
                best[key] = min(best.get(key, float("inf")), row[4])
    print()
    for (name, method), err in sorted(best.items()):
        verdict = "meets" if err <= 1e-3 else "misses"
        print(f"{name} {method}: best solver error at <= 100 NFE = {err:.1e} nats ({verdict} the 1e-3 goal)")


if __name__ == "__main__":
    main()
