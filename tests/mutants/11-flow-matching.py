"""Wrong implementations of assignment 11-flow-matching: see tests/mutants/__init__.py."""

# cfm_loss is what train_flow_matching minimises: a loss whose minimiser is a wrong field
# (wrong target or wrong interpolation) also loses the training exercise; a loss that is only
# wrong by a constant factor (Adam does not see it) or only in its gradient with respect to the
# data does not. The training exercise is sampled by the grader's own RK4, so a wrong sampler
# loses only its own cell. _times (Exercise 1's cell) is shared with gmm_velocity.

MUTANTS = [
    # Exercise 1: vp_path
    {
        "name": "vp-sigma-prime-missing-alpha-squared",
        "cell": "vp_path",
        "find": "d_sigma = 0.5 * beta * alpha**2 / sigma",
        "replace": "d_sigma = 0.5 * beta / sigma",
        "loses": ["test_vp_path"],
    },
    {
        "name": "vp-alpha-prime-missing-one-half",
        "cell": "vp_path",
        "find": "d_alpha = -0.5 * beta * alpha",
        "replace": "d_alpha = -beta * alpha",
        "loses": ["test_vp_path"],
    },
    {
        # 1 - alpha^2 by subtraction: at t = 1e-9 it keeps about 7 digits of sigma, and sigma' ~ 1/sigma
        "name": "vp-sigma-by-cancellation",
        "cell": "vp_path",
        "find": "sigma = (-torch.expm1(2 * log_alpha)).sqrt()",
        "replace": "sigma = (1 - alpha**2).sqrt()",
        "loses": ["test_vp_path"],
    },
    {
        "name": "vp-accepts-t-zero",
        "cell": "vp_path",
        "find": "if not bool(((t > 0) & (t <= 1)).all()):",
        "replace": "if not bool(((t >= 0) & (t <= 1)).all()):",
        "loses": ["test_vp_path"],
    },
    {
        "name": "vp-accepts-z-of-another-shape",
        "cell": "vp_path",
        "find": "    if z.shape != x0.shape:\n        raise ValueError(f\"z must have x0's shape {tuple(x0.shape)}, got {tuple(z.shape)}\")\n    t = _times(t, x0)",
        "replace": "    t = _times(t, x0)",
        "loses": ["test_vp_path"],
    },
    {
        # "ValueError if t is a tensor of any other shape", here a (batch, 1) t; _times is shared
        "name": "times-accepts-any-shape-with-batch-entries",
        "cell": "vp_path",
        "find": "    if t.shape != (x.shape[0],):",
        "replace": "    if t.numel() != x.shape[0]:",
        "loses": ["test_vp_path", "test_gmm_velocity"],
    },
    # Exercise 2: cfm_loss
    {
        "name": "cfm-target-x0-minus-z",
        "cell": "cfm_loss",
        "find": "err = velocity_fn(x_t, t) - (z - x0)",
        "replace": "err = velocity_fn(x_t, t) - (x0 - z)",
        "loses": ["test_cfm_loss", "test_train_flow_matching"],
    },
    {
        # noise at t = 0 and data at t = 1: the network learns the velocity of the reversed path
        "name": "cfm-interpolates-the-wrong-way",
        "cell": "cfm_loss",
        "find": "x_t = (1 - tc) * x0 + tc * z",
        "replace": "x_t = tc * x0 + (1 - tc) * z",
        "loses": ["test_cfm_loss", "test_train_flow_matching"],
    },
    {
        # the value is right, but no gradient reaches x0 and z through the velocity model
        "name": "cfm-velocity-at-detached-x_t",
        "cell": "cfm_loss",
        "find": "err = velocity_fn(x_t, t) - (z - x0)",
        "replace": "err = velocity_fn(x_t.detach(), t) - (z - x0)",
        "loses": ["test_cfm_loss"],
    },
    {
        # mean over the dimensions too: a factor 1/D, which Adam does not see
        "name": "cfm-mean-over-all-entries",
        "cell": "cfm_loss",
        "find": "return err.pow(2).reshape(x0.shape[0], -1).sum(1).mean()",
        "replace": "return err.pow(2).mean()",
        "loses": ["test_cfm_loss"],
    },
    {
        "name": "cfm-accepts-t-of-another-shape",
        "cell": "cfm_loss",
        "find": "if not isinstance(t, torch.Tensor) or t.shape != (x0.shape[0],):",
        "replace": "if not isinstance(t, torch.Tensor) or t.numel() != x0.shape[0]:",
        "loses": ["test_cfm_loss"],
    },
    # Exercise 3: ode_sampler
    {
        "name": "sampler-steps-forward-in-time",
        "cell": "ode_sampler",
        "find": "t, h = ts[i].item(), (ts[i + 1] - ts[i]).item()",
        "replace": "t, h = ts[i].item(), (ts[i] - ts[i + 1]).item()",
        "loses": ["test_ode_sampler"],
    },
    {
        "name": "sampler-rk4-last-stage-at-half-step",
        "cell": "ode_sampler",
        "find": "k4 = v(x + h * k3, t + h)",
        "replace": "k4 = v(x + h * k3, t + h / 2)",
        "loses": ["test_ode_sampler"],
    },
    {
        "name": "sampler-rk4-weights-of-simpson-missing",
        "cell": "ode_sampler",
        "find": "x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)",
        "replace": "x = x + h / 4 * (k1 + k2 + k3 + k4)",
        "loses": ["test_ode_sampler"],
    },
    {
        # the velocity evaluated at the end of each Euler step's interval
        "name": "sampler-euler-at-the-next-time",
        "cell": "ode_sampler",
        "find": "                x = x + h * v(x, t)",
        "replace": "                x = x + h * v(x, t + h)",
        "loses": ["test_ode_sampler"],
    },
    {
        "name": "sampler-accepts-unknown-method",
        "cell": "ode_sampler",
        "find": "if n_steps < 1 or method not in (\"euler\", \"rk4\"):",
        "replace": "if n_steps < 1:",
        "loses": ["test_ode_sampler"],
    },
    # Exercise 4 (transfer): gmm_velocity
    {
        # responsibilities from the data's components instead of p_t's
        "name": "gmm-posterior-under-the-data-not-p_t",
        "cell": "gmm_velocity",
        "find": "log_r = weights.log()[None] - 0.5 * (diff**2).sum(-1) / var - 0.5 * D * var.log()",
        "replace": "log_r = weights.log()[None] - 0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1) / s2 - 0.5 * D * s2.log()",
        "loses": ["test_gmm_velocity"],
    },
    {
        "name": "gmm-posterior-without-log-det",
        "cell": "gmm_velocity",
        "find": "log_r = weights.log()[None] - 0.5 * (diff**2).sum(-1) / var - 0.5 * D * var.log()",
        "replace": "log_r = weights.log()[None] - 0.5 * (diff**2).sum(-1) / var",
        "loses": ["test_gmm_velocity"],
    },
    {
        # Cov(x_t, z - x0 | k) without the data part -(1 - t) s_k^2
        "name": "gmm-slope-without-data-covariance",
        "cell": "gmm_velocity",
        "find": "slope = (t[:, None] - a * s2) / var",
        "replace": "slope = t[:, None] / var",
        "loses": ["test_gmm_velocity"],
    },
    {
        "name": "gmm-prior-weights-instead-of-posterior",
        "cell": "gmm_velocity",
        "find": "r = torch.softmax(log_r, dim=1)",
        "replace": "r = weights[None].expand_as(log_r)",
        "loses": ["test_gmm_velocity"],
    },
    {
        "name": "gmm-accepts-t-outside-0-1",
        "cell": "gmm_velocity",
        "find": "if not bool(((t >= 0) & (t <= 1)).all()):",
        "replace": "if False:",
        "loses": ["test_gmm_velocity"],
    },
    # Exercise 5 (training, graded by outcome): models that train but miss the MMD bound
    {
        # the named weaker model of nb11_trained_velocity_mmd: 150 steps whatever the budget
        "name": "train-stops-after-150-steps",
        "cell": "train_flow_matching",
        "find": "for _ in range(n_steps):",
        "replace": "for _ in range(min(n_steps, 150)):",
        "loses": ["test_train_flow_matching"],
    },
    {
        # times from [0.5, 1): the network never sees the half of the path next to the data
        "name": "train-times-from-one-half",
        "cell": "train_flow_matching",
        "find": "t = torch.rand(256).to(x0.device)",
        "replace": "t = (0.5 + 0.5 * torch.rand(256)).to(x0.device)",
        "loses": ["test_train_flow_matching"],
    },
    {
        "name": "train-returns-in-train-mode",
        "cell": "train_flow_matching",
        "find": "return net.eval()",
        "replace": "return net",
        "loses": ["test_train_flow_matching"],
    },
    # Exercise 6 (derivation)
    {
        # the unconditional variance of the target, E||z - x0 - E[z - x0]||^2 = 2 + s1^2 + s2^2
        "name": "derivation-unconditional-variance",
        "cell": "cfm_min_loss",
        "find": "CFM_MIN_LOSS = math.pi / 2 * (0.5 + 2.0)",
        "replace": "CFM_MIN_LOSS = 2 + 0.5**2 + 2.0**2",
        "loses": ["test_cfm_min_loss"],
    },
    {
        "name": "derivation-variances-instead-of-stds",
        "cell": "cfm_min_loss",
        "find": "CFM_MIN_LOSS = math.pi / 2 * (0.5 + 2.0)",
        "replace": "CFM_MIN_LOSS = math.pi / 2 * (0.5**2 + 2.0**2)",
        "loses": ["test_cfm_min_loss"],
    },
    # correct solutions written another way must pass every hidden test
    {
        # E[z | x, k] - E[x0 | x, k], each by Gaussian conditioning, instead of one slope
        "name": "correct-gmm-velocity-from-posterior-means",
        "cell": "gmm_velocity",
        "find": "per_component = -means[None] + slope[:, :, None] * diff",
        "replace": ("e_z = (t[:, None] / var)[:, :, None] * diff\n"
                    "    e_x0 = means[None] + (a * s2 / var)[:, :, None] * diff\n"
                    "    per_component = e_z - e_x0"),
        "loses": [],
    },
    {
        "name": "correct-derivation-by-arctangents",
        "cell": "cfm_min_loss",
        "find": "CFM_MIN_LOSS = math.pi / 2 * (0.5 + 2.0)",
        "replace": "CFM_MIN_LOSS = sum(s * (math.atan(1 / s) + math.atan(s)) for s in (0.5, 2.0))",
        "loses": [],
    },
]
