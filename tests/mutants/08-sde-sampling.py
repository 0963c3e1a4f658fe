"""Wrong implementations of assignment 08-sde-sampling: see tests/mutants/__init__.py."""

# reverse_drift, em_step and em_sampler are reused by the later exercises, so a mistake in one
# of them also loses the test cells of the exercises built on it.
LATER_THAN_DRIFT = ["test_reverse_drift", "test_em_step", "test_em_sampler", "test_pc_step"]
LATER_THAN_STEP = ["test_em_step", "test_em_sampler", "test_pc_step"]

MUTANTS = [
    # Exercise 1: ve_marginal
    {
        "name": "ve-std-sigma-max",
        "cell": "ve_marginal",
        "find": "std = sigma_min * torch.expm1(2 * t * log_ratio).clamp_min(0).sqrt()",
        "replace": "std = torch.full_like(t, sigma_max)",
        "loses": ["test_ve_marginal"],
    },
    {
        "name": "ve-std-sigma-t-without-subtracting-sigma-min",
        "cell": "ve_marginal",
        "find": "std = sigma_min * torch.expm1(2 * t * log_ratio).clamp_min(0).sqrt()",
        "replace": "std = sigma_min * torch.exp(t * log_ratio)",
        "loses": ["test_ve_marginal"],
    },
    {
        "name": "ve-variance-returned-as-std",
        "cell": "ve_marginal",
        "find": "std = sigma_min * torch.expm1(2 * t * log_ratio).clamp_min(0).sqrt()",
        "replace": "std = sigma_min**2 * torch.expm1(2 * t * log_ratio).clamp_min(0)",
        "loses": ["test_ve_marginal"],
    },
    {
        "name": "ve-std-shape-batch",
        "cell": "ve_marginal",
        "find": "return x0.clone(), _column(std, x0)",
        "replace": "return x0.clone(), std",
        "loses": ["test_ve_marginal"],
    },
    {
        # issue 19 (raises clauses): "ValueError if t is a tensor of any other shape", here a
        # (batch, 1) t with as many entries as the batch; _times is shared, so both cells lose
        "name": "times-accepts-any-shape-with-batch-entries",
        "cell": "ve_marginal",
        "find": "    if t.shape != (x.shape[0],):",
        "replace": "    if t.numel() != x.shape[0]:",
        "loses": ["test_ve_marginal", "test_vp_marginal"],
    },
    # Exercise 2: vp_marginal
    {
        "name": "vp-mean-missing-alpha",
        "cell": "vp_marginal",
        "find": "return _column(log_alpha.exp(), x0) * x0, _column(std, x0)",
        "replace": "return x0.clone(), _column(std, x0)",
        "loses": ["test_vp_marginal"],
    },
    {
        "name": "vp-alpha-missing-one-half",
        "cell": "vp_marginal",
        "find": "log_alpha = -0.5 * (beta_min * t + 0.5 * (beta_max - beta_min) * t**2)",
        "replace": "log_alpha = -(beta_min * t + 0.5 * (beta_max - beta_min) * t**2)",
        "loses": ["test_vp_marginal"],
    },
    {
        "name": "vp-beta-t-times-t-instead-of-integral",
        "cell": "vp_marginal",
        "find": "log_alpha = -0.5 * (beta_min * t + 0.5 * (beta_max - beta_min) * t**2)",
        "replace": "log_alpha = -0.5 * (beta_min + t * (beta_max - beta_min)) * t",
        "loses": ["test_vp_marginal"],
    },
    {
        "name": "vp-std-one-minus-alpha",
        "cell": "vp_marginal",
        "find": "std = (-torch.expm1(2 * log_alpha)).clamp_min(0).sqrt()",
        "replace": "std = (-torch.expm1(log_alpha)).clamp_min(0).sqrt()",
        "loses": ["test_vp_marginal"],
    },
    # Exercise 3: reverse_drift
    {
        "name": "drift-plus-instead-of-minus",
        "cell": "reverse_drift",
        "find": "return f - g**2 * score_fn(x, t)",
        "replace": "return f + g**2 * score_fn(x, t)",
        "loses": LATER_THAN_DRIFT,
    },
    {
        "name": "drift-g-instead-of-g-squared",
        "cell": "reverse_drift",
        "find": "return f - g**2 * score_fn(x, t)",
        "replace": "return f - g * score_fn(x, t)",
        "loses": LATER_THAN_DRIFT,
    },
    {
        "name": "drift-forgets-f",
        "cell": "reverse_drift",
        "find": "return f - g**2 * score_fn(x, t)",
        "replace": "return -g**2 * score_fn(x, t)",
        # the VE SDE has f = 0: the sampler's VE case and the PC step's VE case would pass,
        # but its VP cases do not
        "loses": LATER_THAN_DRIFT,
    },
    # Exercise 4: em_step
    {
        "name": "em-noise-scaled-by-dt",
        "cell": "em_step",
        "find": "return x_mean + g * h.sqrt() * z, x_mean",
        "replace": "return x_mean + g * h * z, x_mean",
        "loses": LATER_THAN_STEP,
    },
    {
        "name": "em-drift-added-forward-in-time",
        "cell": "em_step",
        "find": "x_mean = x - reverse_drift(score_fn, sde, x, t) * h",
        "replace": "x_mean = x + reverse_drift(score_fn, sde, x, t) * h",
        "loses": LATER_THAN_STEP,
    },
    {
        "name": "em-noise-drawn-on-x-device",
        "cell": "em_step",
        "find": "z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)",
        "replace": "z = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x)",
        "loses": LATER_THAN_STEP,
    },
    # Exercise 5: em_sampler
    {
        "name": "sampler-time-runs-forward",
        "cell": "em_sampler",
        "find": "        x, x_mean = em_step(score_fn, sde, x, ts[i], ts[i] - ts[i + 1], generator=generator)",
        "replace": "        x, x_mean = em_step(score_fn, sde, x, ts[n_steps - i], ts[i] - ts[i + 1], generator=generator)",
        "loses": ["test_em_sampler"],
    },
    {
        "name": "sampler-returns-noisy-last-step",
        "cell": "em_sampler",
        "find": "    return x_mean\n",
        "replace": "    return x\n",
        "loses": ["test_em_sampler"],
    },
    {
        "name": "sampler-one-step-short",
        "cell": "em_sampler",
        "find": "for i in range(n_steps):",
        "replace": "for i in range(n_steps - 1):",
        "loses": ["test_em_sampler"],
    },
    {
        "name": "sampler-accepts-bad-eps",
        "cell": "em_sampler",
        "find": "if n_steps < 1 or not 0 < eps < sde.T:",
        "replace": "if n_steps < 1:",
        "loses": ["test_em_sampler"],
    },
    {
        # issue 19 (extremes): eps = T, the boundary of 0 < eps < T, must raise too
        "name": "sampler-accepts-eps-equal-T",
        "cell": "em_sampler",
        "find": "if n_steps < 1 or not 0 < eps < sde.T:",
        "replace": "if n_steps < 1 or not 0 < eps <= sde.T:",
        "loses": ["test_em_sampler"],
    },
    # Exercise 6: pc_step
    {
        "name": "pc-step-size-not-squared",
        "cell": "pc_step",
        "find": "step = 2 * (snr * z_norm / s_norm) ** 2",
        "replace": "step = snr * z_norm / s_norm",
        "loses": ["test_pc_step"],
    },
    {
        "name": "pc-noise-sqrt-step-instead-of-sqrt-2-step",
        "cell": "pc_step",
        "find": "x = x + step * s + (2 * step).sqrt() * z",
        "replace": "x = x + step * s + step.sqrt() * z",
        "loses": ["test_pc_step"],
    },
    {
        "name": "pc-per-sample-norms",
        "cell": "pc_step",
        "find": "step = 2 * (snr * z_norm / s_norm) ** 2",
        "replace": "step = (2 * (snr * z.reshape(x.shape[0], -1).norm(dim=1) / s.reshape(x.shape[0], -1).norm(dim=1)) ** 2).reshape((-1,) + (1,) * (x.dim() - 1))",
        "loses": ["test_pc_step"],
    },
    {
        "name": "pc-predictor-before-corrector",
        "cell": "pc_step",
        "find": "    s = score_fn(x, _times(t, x))\n",
        "replace": "    x, _ = em_step(score_fn, sde, x, t, h, generator=generator)\n    s = score_fn(x, _times(t, x))\n",
        "loses": ["test_pc_step"],
    },
]
