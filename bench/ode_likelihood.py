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
nats of error at 100 NFE or fewer. Run:
`python bench/ode_likelihood.py [--points N] [--quick] [--json PATH]` (``--quick``: a few
settings only; ``--json``: also write the table for bench/run.py). :func:`section` returns
the rows as data.
"""
from __future__ import annotations

import argparse
import time

import torch

from bench_common import emit, fmt
from flowlib.diffusion.gmm import GaussianMixture
from flowlib.diffusion.ode import ode_log_prob
from flowlib.diffusion.sde import VESDE, VPSDE

EPS = 1e-5


def mixture() -> GaussianMixture:
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]], dtype=torch.float64)
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), means,
                           stds=torch.tensor([0.5, 0.7, 0.4], dtype=torch.float64))


def settings(quick: bool = False) -> list[tuple[str, dict]]:
    """Solver settings, cheapest first: fixed-step RK4 (uniform and t ~ (i/n)^2 grids), RK45 tolerances."""
    if quick:
        return [("rk4", dict(n_steps=10)), ("rk4", dict(n_steps=25, time_power=2.0)), ("rk45", dict(rtol=1e-4, atol=1e-4))]
    out = [("rk4", dict(n_steps=n)) for n in (5, 10, 25, 50, 100)]
    out += [("rk4", dict(n_steps=n, time_power=2.0)) for n in (10, 25, 50)]
    out += [("rk45", dict(rtol=tol, atol=tol)) for tol in (1e-3, 1e-4, 1e-5, 1e-7)]
    return out


def rows(sde, name: str, x: torch.Tensor, gm: GaussianMixture, quick: bool = False):
    """Yield ``(sde, solver, setting, NFE, solver error, end-to-end error, seconds)`` per setting."""
    score = lambda v, t: gm.score_at(v, t, sde)  # noqa: E731
    exact_T = lambda z: gm.log_prob_at(z, sde.T, sde)  # noqa: E731
    truth_eps, truth_0 = gm.log_prob_at(x, EPS, sde), gm.log_prob(x)
    for method, kw in settings(quick):
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


def section(points: int = 64, quick: bool = False) -> tuple[dict, list[str]]:
    """The table as a section for bench/common.py, and one verdict line per (SDE, solver)."""
    torch.manual_seed(0)
    gm = mixture()
    x = gm.sample(points, generator=torch.Generator().manual_seed(1))
    table, best = [], {}
    for sde, name in ((VPSDE(), "VP"), (VESDE(sigma_max=10.0), "VE (sigma_max 10)")):
        for row in rows(sde, name, x, gm, quick):
            table.append([row[0], row[1], row[2], fmt(row[3]), fmt(row[4], ".2e"), fmt(row[5], ".2e"), fmt(row[6], ".2f")])
            if row[3] <= 100:
                key = (row[0], row[1] + (" (t ~ (i/n)^2)" if "^2" in row[2] else ""))
                best[key] = min(best.get(key, float("inf")), row[4])
    verdicts = []
    for (name, method), err in sorted(best.items()):
        verdict = "meets" if err <= 1e-3 else "misses"
        verdicts.append(f"{name} {method}: best solver error at <= 100 NFE = {err:.1e} nats ({verdict} the 1e-3 goal)")
    sec = {
        "title": "Probability-flow ODE likelihood: error against cost",
        "intro": (f"Exact score of a 3-component 2-D Gaussian mixture, {points} test points, float64; error = largest "
                  "|log-likelihood - analytic| in nats. Solver error: exact terminal density; end to end: the SDE prior."),
        "columns": ["SDE", "solver", "setting", "NFE", "solver error (nats)", "end to end (nats)", "seconds"],
        "rows": table,
        "notes": ["; ".join(verdicts) + "."] if verdicts else [],
    }
    return sec, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="three solver settings per SDE only")
    parser.add_argument("--json", help="also write the table as JSON here (for bench/run.py)")
    args = parser.parse_args()
    if args.points < 1:
        parser.error("--points must be at least 1")
    sec, _ = section(args.points, args.quick)
    emit(sec, args.json)


if __name__ == "__main__":
    main()
