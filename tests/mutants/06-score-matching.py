"""Wrong implementations of assignment 06-score-matching: see tests/mutants/__init__.py."""

MUTANTS = [
    # Exercise 1: gaussian_score
    {
        "name": "gaussian-divides-by-std-not-variance",
        "cell": "gaussian_score",
        "find": "return -(x - mean) / std**2",
        "replace": "return -(x - mean) / std",
        "loses": ["test_gaussian_score"],
    },
    {
        "name": "gaussian-score-points-away-from-mean",
        "cell": "gaussian_score",
        "find": "return -(x - mean) / std**2",
        "replace": "return (x - mean) / std**2",
        "loses": ["test_gaussian_score"],
    },
    # Exercise 2: mixture_score
    {
        "name": "mixture-unnormalised-responsibilities",
        "cell": "mixture_score",
        "find": "resp = torch.softmax(log_comp, dim=1)",
        "replace": "resp = torch.exp(log_comp)",
        "loses": ["test_mixture_score"],
    },
    {
        "name": "mixture-drops-the-std-dependent-constant",
        "cell": "mixture_score",
        "find": "\n                - 0.5 * D * torch.log(2 * math.pi * var))",
        "replace": ")",
        "loses": ["test_mixture_score"],
    },
    {
        "name": "mixture-responsibilities-in-linear-space",
        "cell": "mixture_score",
        "find": "resp = torch.softmax(log_comp, dim=1)",
        "replace": "resp = torch.exp(log_comp) / torch.exp(log_comp).sum(1, keepdim=True)",
        "loses": ["test_mixture_score"],
    },
    # Exercise 3: hyvarinen_loss
    {
        "name": "hyvarinen-missing-trace",
        "cell": "hyvarinen_loss",
        "find": "(trace + 0.5 * (s**2).sum(1)).mean()",
        "replace": "(0.5 * (s**2).sum(1)).mean()",
        "loses": ["test_hyvarinen_loss"],
    },
    {
        "name": "hyvarinen-trace-not-in-graph",
        "cell": "hyvarinen_loss",
        "find": "create_graph=True)",
        "replace": "retain_graph=True)",
        "loses": ["test_hyvarinen_loss"],
    },
    # Exercise 4: sliced_score_matching_loss
    {
        "name": "ssm-missing-half",
        "cell": "sliced_score_matching_loss",
        "find": "(vjv + 0.5 * vs**2).mean()",
        "replace": "(vjv + vs**2).mean()",
        "loses": ["test_sliced_score_matching_loss"],
    },
    {
        "name": "ssm-wrong-projection",
        "cell": "sliced_score_matching_loss",
        "find": "vjv = (gv * v).sum(1)",
        "replace": "vjv = gv.sum(1)",
        "loses": ["test_sliced_score_matching_loss"],
    },
    # Exercise 5: denoising_score_matching_loss
    {
        "name": "dsm-target-wrong-sign",
        "cell": "denoising_score_matching_loss",
        "find": "target = -(x_noisy - x) / sig_col**2",
        "replace": "target = (x_noisy - x) / sig_col**2",
        "loses": ["test_denoising_score_matching_loss", "test_fit_score_model"],
    },
    {
        "name": "dsm-target-wrong-sigma-power",
        "cell": "denoising_score_matching_loss",
        "find": "target = -(x_noisy - x) / sig_col**2",
        "replace": "target = -(x_noisy - x) / sig_col",
        "loses": ["test_denoising_score_matching_loss", "test_fit_score_model"],
    },
    {
        "name": "dsm-score-on-clean-data",
        "cell": "denoising_score_matching_loss",
        "find": "s = score_fn(x_noisy, sig)",
        "replace": "s = score_fn(x, sig)",
        "loses": ["test_denoising_score_matching_loss", "test_fit_score_model"],
    },
    # Exercise 6: langevin_step
    {
        "name": "langevin-sqrt-eps-instead-of-sqrt-2eps",
        "cell": "langevin_step",
        "find": "math.sqrt(2 * eps) * z",
        "replace": "math.sqrt(eps) * z",
        # the chain reuses langevin_step, so its test fails too
        "loses": ["test_langevin_step", "test_langevin_chain"],
    },
    {
        "name": "langevin-descends-the-score",
        "cell": "langevin_step",
        "find": "return x + eps * score_fn(x)",
        "replace": "return x - eps * score_fn(x)",
        "loses": ["test_langevin_step", "test_langevin_chain"],
    },
    # Exercise 7: langevin_chain
    {
        "name": "chain-one-step-short",
        "cell": "langevin_chain",
        "find": "for _ in range(n_steps):",
        "replace": "for _ in range(max(n_steps - 1, 0)):",
        "loses": ["test_langevin_chain"],
    },
    {
        "name": "chain-restarts-from-x0",
        "cell": "langevin_chain",
        "find": "x = langevin_step(x, score_fn, eps, generator)",
        "replace": "x = langevin_step(x0.detach(), score_fn, eps, generator)",
        "loses": ["test_langevin_chain"],
    },
    # issue 19: one wrong solution per class of mistake that escaped the hidden tests
    {
        # gradients: torch.tensor(...) copies a tensor std and detaches it (right value, no gradient)
        "name": "gaussian-std-copied-with-torch-tensor",
        "cell": "gaussian_score",
        "find": "std = torch.as_tensor(std, dtype=x.dtype, device=x.device)",
        "replace": "std = torch.as_tensor(std, dtype=x.dtype, device=x.device).detach().clone()",
        "loses": ["test_gaussian_score"],
    },
    {
        # gradients: responsibilities treated as constants (as in EM): right value, wrong d score / dx
        "name": "mixture-responsibilities-detached",
        "cell": "mixture_score",
        "find": "resp = torch.softmax(log_comp, dim=1)",
        "replace": "resp = torch.softmax(log_comp, dim=1).detach()",
        "loses": ["test_mixture_score"],
    },
    {
        # raises: only a number std is checked, a tensor with a zero entry is accepted
        "name": "gaussian-checks-only-a-number-std",
        "cell": "gaussian_score",
        "find": "if not bool((std > 0).all()):",
        "replace": "if std.dim() == 0 and not bool(std > 0):",
        "loses": ["test_gaussian_score"],
    },
    {
        # raises: a zero weight is accepted (only negative ones refused)
        "name": "mixture-accepts-a-zero-weight",
        "cell": "mixture_score",
        "find": "if not (bool((weights > 0).all()) and bool((stds > 0).all())):",
        "replace": "if not (bool((weights >= 0).all()) and bool((stds > 0).all())):",
        "loses": ["test_mixture_score"],
    },
    {
        # raises: a 3-D batch is not refused (only the 1-D case)
        "name": "hyvarinen-refuses-only-1d-input",
        "cell": "hyvarinen_loss",
        "find": "if x.dim() != 2:",
        "replace": "if x.dim() < 2:",
        "loses": ["test_hyvarinen_loss"],
    },
    {
        # dtypes: the example, a Python-float std made a float32 tensor
        "name": "gaussian-std-constant-in-float32",
        "cell": "gaussian_score",
        "find": "std = torch.as_tensor(std, dtype=x.dtype, device=x.device)",
        "replace": "std = torch.as_tensor(std, device=x.device)",
        "loses": ["test_gaussian_score"],
    },
    {
        # dtypes: sigma_batch passed to score_fn in float32 when sigma is a Python number
        "name": "dsm-sigma-batch-in-float32",
        "cell": "denoising_score_matching_loss",
        "find": "sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)",
        "replace": "sig = torch.as_tensor(sigma, device=x.device)",
        "loses": ["test_denoising_score_matching_loss"],
    },
    {
        # detached: the chain keeps the autograd graph through every step
        "name": "chain-keeps-the-graph",
        "cell": "langevin_chain",
        "find": "x = x0.detach()\n    with torch.no_grad():\n        for _ in range(n_steps):\n            x = langevin_step(x, score_fn, eps, generator)",
        "replace": "x = x0\n    for _ in range(n_steps):\n        x = langevin_step(x, score_fn, eps, generator)",
        "loses": ["test_langevin_chain"],
    },
    # Exercise 8 (transfer): student_t_score
    {
        "name": "student-t-numerator-nu-not-nu-plus-d",
        "cell": "student_t_score",
        "find": "return -(df + x.shape[1]) * diff / (df * scale**2 + r2)",
        "replace": "return -df * diff / (df * scale**2 + r2)",
        "loses": ["test_student_t_score"],
    },
    {
        "name": "student-t-gaussian-like-denominator",
        "cell": "student_t_score",
        "find": "return -(df + x.shape[1]) * diff / (df * scale**2 + r2)",
        "replace": "return -(df + x.shape[1]) * diff / (df * scale**2 + scale**2 * r2)",
        "loses": ["test_student_t_score"],
    },
    {
        # extremes: df = inf gives inf / inf = NaN without its own branch
        "name": "student-t-nan-at-infinite-df",
        "cell": "student_t_score",
        "find": "if math.isinf(df):",
        "replace": "if False:",
        "loses": ["test_student_t_score"],
    },
    {
        # gradients: the squared radius detached (right value, wrong d score / dx)
        "name": "student-t-radius-detached",
        "cell": "student_t_score",
        "find": "r2 = (diff**2).sum(dim=1, keepdim=True)",
        "replace": "r2 = (diff**2).sum(dim=1, keepdim=True).detach()",
        "loses": ["test_student_t_score"],
    },
    {
        # raises: df = nan slips through a "df <= 0" test
        "name": "student-t-accepts-nan-df",
        "cell": "student_t_score",
        "find": "if not df > 0:",
        "replace": "if df <= 0:",
        "loses": ["test_student_t_score"],
    },
    # Exercise 9 (derivation): dsm_loss_minimum
    {
        "name": "dsm-minimum-without-the-half",
        "cell": "dsm_loss_minimum",
        "find": "return 0.5 * dim * tau**2 / (tau**2 + sigma**2)",
        "replace": "return dim * tau**2 / (tau**2 + sigma**2)",
        "loses": ["test_dsm_loss_minimum"],
    },
    {
        "name": "dsm-minimum-noise-fraction",
        "cell": "dsm_loss_minimum",
        "find": "return 0.5 * dim * tau**2 / (tau**2 + sigma**2)",
        "replace": "return 0.5 * dim * sigma**2 / (tau**2 + sigma**2)",
        "loses": ["test_dsm_loss_minimum"],
    },
    # Exercise 10 (training): fit_score_model
    {
        # trains, but a linear score (a single Gaussian) cannot follow a two-mode mixture
        "name": "fit-linear-score-model",
        "cell": "fit_score_model",
        "find": "net = flowlib.ScoreMLP(2, hidden=64, n_layers=2).to(x_train.device)",
        "replace": ("class LinearScore(torch.nn.Module):  # s(x) = A x + b, whatever sigma\n"
                    "        def __init__(self):\n"
                    "            super().__init__()\n"
                    "            self.lin = torch.nn.Linear(2, 2)\n\n"
                    "        def forward(self, x, sigma):\n"
                    "            return self.lin(x)\n\n"
                    "    net = LinearScore().to(x_train.device)"),
        "loses": ["test_fit_score_model"],
    },
    {
        "name": "fit-forty-steps",
        "cell": "fit_score_model",
        "find": "for _ in range(n_steps):",
        "replace": "for _ in range(n_steps // 20):",
        "loses": ["test_fit_score_model"],
    },
    # correct solutions in another style: they must keep every point
    {
        # no branch for df = inf: x.shape[1] / inf and r2 / inf are 0
        "name": "correct-student-t-divided-by-df",
        "cell": "student_t_score",
        "find": ("if math.isinf(df):\n        return -diff / scale**2\n    r2 = (diff**2).sum(dim=1, keepdim=True)\n"
                 "    return -(df + x.shape[1]) * diff / (df * scale**2 + r2)"),
        "replace": ("r2 = (diff**2).sum(dim=1, keepdim=True)\n"
                    "    return -(1 + x.shape[1] / df) * diff / (scale**2 + r2 / df)"),
        "loses": [],
    },
    {
        "name": "correct-dsm-minimum-as-one-minus-noise-fraction",
        "cell": "dsm_loss_minimum",
        "find": "return 0.5 * dim * tau**2 / (tau**2 + sigma**2)",
        "replace": "return 0.5 * dim * (1 - sigma**2 / (tau**2 + sigma**2))",
        "loses": [],
    },
]
