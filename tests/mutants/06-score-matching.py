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
        "loses": ["test_denoising_score_matching_loss"],
    },
    {
        "name": "dsm-target-wrong-sigma-power",
        "cell": "denoising_score_matching_loss",
        "find": "target = -(x_noisy - x) / sig_col**2",
        "replace": "target = -(x_noisy - x) / sig_col",
        "loses": ["test_denoising_score_matching_loss"],
    },
    {
        "name": "dsm-score-on-clean-data",
        "cell": "denoising_score_matching_loss",
        "find": "s = score_fn(x_noisy, sig)",
        "replace": "s = score_fn(x, sig)",
        "loses": ["test_denoising_score_matching_loss"],
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
]
