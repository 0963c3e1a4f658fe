"""Wrong implementations of assignment 09-ode-likelihood: see tests/mutants/__init__.py."""

BOTH_ODE = ["test_ode_log_likelihood_exact", "test_ode_log_likelihood_hutchinson"]

MUTANTS = [
    # Exercise 1: pf_drift (reused by Exercise 4, so both ODE cells fail too)
    {
        "name": "drift-g-instead-of-g-squared",
        "cell": "pf_drift",
        "find": "f - 0.5 * g**2 * score_fn(x, t)",
        "replace": "f - 0.5 * g * score_fn(x, t)",
        "loses": ["test_pf_drift"] + BOTH_ODE,
    },
    {
        "name": "drift-missing-one-half",
        "cell": "pf_drift",
        "find": "f - 0.5 * g**2 * score_fn(x, t)",
        "replace": "f - g**2 * score_fn(x, t)",
        "loses": ["test_pf_drift"] + BOTH_ODE,
    },
    {
        "name": "drift-scalar-time-passed-to-score",
        "cell": "pf_drift",
        "find": "    if t.dim() == 0:\n        t = t.expand(x.shape[0])\n",
        "replace": "",
        # the VP/VE coefficients and the mixture oracle broadcast a 0-dim t, but a score that
        # indexes t per sample (the visible Gaussian score of the exact-trace cell) breaks
        "loses": ["test_pf_drift", "test_ode_log_likelihood_exact"],
    },
    # Exercise 2: exact_divergence (Exercise 4 uses it for trace="exact")
    {
        "name": "divergence-sums-whole-jacobian",
        "cell": "exact_divergence",
        "find": "div = div + grad_i[:, i]",
        "replace": "div = div + grad_i.sum(1)",
        "loses": ["test_exact_divergence", "test_ode_log_likelihood_exact"],
    },
    {
        "name": "divergence-without-enable-grad",
        "cell": "exact_divergence",
        "find": "with torch.enable_grad():",
        "replace": "if True:",
        "loses": ["test_exact_divergence"],
    },
    {
        # issue 19 (raises clauses): "raise ValueError if x is not 2-D", here a 3-D x
        "name": "divergence-accepts-3d-x",
        "cell": "exact_divergence",
        "find": "if not isinstance(x, torch.Tensor) or x.dim() != 2:",
        "replace": "if not isinstance(x, torch.Tensor) or x.dim() < 2:",
        "loses": ["test_exact_divergence"],
    },
    # Exercise 3: hutchinson_divergence
    {
        "name": "hutchinson-probe-on-one-side",
        "cell": "hutchinson_divergence",
        "find": "return (vjp * probe).sum(1).detach()",
        "replace": "return vjp.sum(1).detach()",
        "loses": ["test_hutchinson_divergence", "test_ode_log_likelihood_hutchinson"],
    },
    {
        "name": "hutchinson-fresh-gaussian-probe",
        "cell": "hutchinson_divergence",
        "find": "(out * probe).sum(), x)",
        "replace": "(out * torch.randn_like(probe)).sum(), x)",
        "loses": ["test_hutchinson_divergence", "test_ode_log_likelihood_hutchinson"],
    },
    # Exercise 4: ode_log_likelihood
    {
        "name": "rk4-equal-weights",
        "cell": "ode_log_likelihood",
        "find": "y = y + h / 6 * (k1x + 2 * k2x + 2 * k3x + k4x)\n        delta = delta + h / 6 * (k1d + 2 * k2d + 2 * k3d + k4d)",
        "replace": "y = y + h / 4 * (k1x + k2x + k3x + k4x)\n        delta = delta + h / 4 * (k1d + k2d + k3d + k4d)",
        "loses": BOTH_ODE,
    },
    {
        "name": "log-density-integral-wrong-sign",
        "cell": "ode_log_likelihood",
        "find": "return (log_pT + delta).detach()",
        "replace": "return (log_pT - delta).detach()",
        "loses": BOTH_ODE,
    },
    {
        "name": "forgot-prior-log-density",
        "cell": "ode_log_likelihood",
        "find": "return (log_pT + delta).detach()",
        "replace": "return delta.detach()",
        "loses": BOTH_ODE,
    },
    {
        "name": "hutchinson-fresh-probe-per-evaluation",
        "cell": "ode_log_likelihood",
        "find": "div = hutchinson_divergence(drift, y, probe)",
        "replace": "div = hutchinson_divergence(drift, y, (2 * torch.randint(0, 2, x.shape, generator=generator, device=dev) - 1).to(x.device, x.dtype))",
        "loses": ["test_ode_log_likelihood_hutchinson"],
    },
    {
        # issue 19 (extremes): eps = T, the boundary of 0 < eps < T, must raise too
        "name": "ode-accepts-eps-equal-T",
        "cell": "ode_log_likelihood",
        "find": "if n_steps < 1 or not 0 < eps < sde.T:",
        "replace": "if n_steps < 1 or not 0 < eps <= sde.T:",
        "loses": ["test_ode_log_likelihood_exact"],
    },
    {
        "name": "time-grid-from-zero",
        "cell": "ode_log_likelihood",
        "find": "ts = torch.linspace(eps, sde.T, n_steps + 1, dtype=torch.float64)",
        "replace": "ts = torch.linspace(0.0, sde.T, n_steps + 1, dtype=torch.float64)",
        "loses": BOTH_ODE,
    },
]
