"""Wrong implementations of assignment 08-sde-sampling: see tests/mutants/__init__.py."""

# reverse_drift, em_step and em_sampler are reused by the later exercises, so a mistake in one
# of them also loses the test cells of the exercises built on it (the training exercise's grader
# samples the trained network with the student's em_sampler: a sampler that goes wrong misses
# its MMD bound, by a factor 1.5 or more for the mutants that list it).
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
        # (batch, 1) t with as many entries as the batch; _times is shared, so every cell that takes t loses
        "name": "times-accepts-any-shape-with-batch-entries",
        "cell": "ve_marginal",
        "find": "    if t.shape != (x.shape[0],):",
        "replace": "    if t.numel() != x.shape[0]:",
        "loses": ["test_ve_marginal", "test_vp_marginal", "test_subvp_marginal", "test_subvp_reverse_drift"],
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
        "loses": LATER_THAN_DRIFT + ["test_train_vp_score"],
    },
    {
        "name": "drift-g-instead-of-g-squared",
        "cell": "reverse_drift",
        "find": "return f - g**2 * score_fn(x, t)",
        "replace": "return f - g * score_fn(x, t)",
        "loses": LATER_THAN_DRIFT + ["test_train_vp_score"],
    },
    {
        "name": "drift-forgets-f",
        "cell": "reverse_drift",
        "find": "return f - g**2 * score_fn(x, t)",
        "replace": "return -g**2 * score_fn(x, t)",
        # the VE SDE has f = 0: the sampler's VE case and the PC step's VE case would pass,
        # but its VP cases do not
        "loses": LATER_THAN_DRIFT + ["test_train_vp_score"],
    },
    # Exercise 4: em_step
    {
        "name": "em-noise-scaled-by-dt",
        "cell": "em_step",
        "find": "return x_mean + g * h.sqrt() * z, x_mean",
        "replace": "return x_mean + g * h * z, x_mean",
        "loses": LATER_THAN_STEP + ["test_train_vp_score"],
    },
    {
        "name": "em-drift-added-forward-in-time",
        "cell": "em_step",
        "find": "x_mean = x - reverse_drift(score_fn, sde, x, t) * h",
        "replace": "x_mean = x + reverse_drift(score_fn, sde, x, t) * h",
        "loses": LATER_THAN_STEP + ["test_train_vp_score"],
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
        "loses": ["test_em_sampler", "test_train_vp_score"],
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
    # Exercise 7 (transfer): subvp_marginal
    {
        "name": "subvp-std-is-the-variance-root",
        "cell": "subvp_marginal",
        "find": "std = -torch.expm1(-integral)",
        "replace": "std = (-torch.expm1(-integral)).sqrt()",
        "loses": ["test_subvp_marginal"],
    },
    {
        "name": "subvp-std-vp-formula",
        "cell": "subvp_marginal",
        "find": "std = -torch.expm1(-integral)",
        "replace": "std = (-torch.expm1(-2 * integral)).sqrt()",
        "loses": ["test_subvp_marginal"],
    },
    {
        # issue 19 (extremes the spec names): 1 - exp(-B) cancels at t = 1e-9
        "name": "subvp-std-with-cancellation",
        "cell": "subvp_marginal",
        "find": "std = -torch.expm1(-integral)",
        "replace": "std = 1 - torch.exp(-integral)",
        "loses": ["test_subvp_marginal"],
    },
    {
        "name": "subvp-mean-without-one-half",
        "cell": "subvp_marginal",
        "find": "return _column((-0.5 * integral).exp(), x0) * x0, _column(std, x0)",
        "replace": "return _column((-integral).exp(), x0) * x0, _column(std, x0)",
        "loses": ["test_subvp_marginal"],
    },
    # Exercise 8 (transfer): subvp_reverse_drift
    {
        "name": "subvp-drift-vp-diffusion",
        "cell": "subvp_reverse_drift",
        "find": "g2 = beta * -torch.expm1(-2 * integral)",
        "replace": "g2 = beta",
        "loses": ["test_subvp_reverse_drift"],
    },
    {
        "name": "subvp-drift-diffusion-one-minus-e-minus-b",
        "cell": "subvp_reverse_drift",
        "find": "g2 = beta * -torch.expm1(-2 * integral)",
        "replace": "g2 = beta * -torch.expm1(-integral)",
        "loses": ["test_subvp_reverse_drift"],
    },
    {
        "name": "subvp-drift-plus-score",
        "cell": "subvp_reverse_drift",
        "find": "- _column(g2, x) * score_fn(x, t)",
        "replace": "+ _column(g2, x) * score_fn(x, t)",
        "loses": ["test_subvp_reverse_drift"],
    },
    # Exercise 9 (training, graded by outcome): models that train but miss the MMD bound
    {
        # the named weaker model of nb08_trained_score_mmd: 200 steps whatever the budget
        "name": "train-stops-after-200-steps",
        "cell": "train_vp_score",
        "find": "for _ in range(n_steps):",
        "replace": "for _ in range(min(n_steps, 200)):",
        "loses": ["test_train_vp_score"],
    },
    {
        # regresses -z instead of -z / sigma_t: the network learns sigma_t times the score
        "name": "train-loss-without-the-std-factor",
        "cell": "train_vp_score",
        "find": "(std * net(mean + std * z, t) + z)",
        "replace": "(net(mean + std * z, t) + z)",
        "loses": ["test_train_vp_score"],
    },
    {
        # times drawn from [0.3, 1]: the network never sees the small noise levels the sampler ends with
        "name": "train-times-from-0.3",
        "cell": "train_vp_score",
        "find": "eps = 1e-3",
        "replace": "eps = 0.3",
        "loses": ["test_train_vp_score"],
    },
    {
        "name": "train-returns-in-train-mode",
        "cell": "train_vp_score",
        "find": "return net.eval()",
        "replace": "return net",
        "loses": ["test_train_vp_score"],
    },
    # Exercise 10 (derivation)
    {
        # solves the VP condition 1 - alpha_t^2 = 1/4 instead of the sub-VP one
        "name": "derivation-vp-std",
        "cell": "subvp_half_std_time",
        "find": "math.log(2)",
        "replace": "math.log(4 / 3)",
        "loses": ["test_subvp_half_std_time"],
    },
    # a correct solution written another way must pass every hidden test
    {
        "name": "correct-subvp-std-by-sinh",
        "cell": "subvp_marginal",
        "find": "std = -torch.expm1(-integral)",
        "replace": "std = 2 * torch.exp(-0.5 * integral) * torch.sinh(0.5 * integral)",
        "loses": [],
    },
]
