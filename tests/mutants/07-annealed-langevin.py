"""Wrong implementations of assignment 07-annealed-langevin: see tests/mutants/__init__.py."""

MUTANTS = [
    # Exercise 1: noise_levels
    {
        "name": "sigmas-spaced-linearly",
        "cell": "noise_levels",
        "find": "log_sigmas.exp().to(",
        "replace": "(sigma_max + steps * (sigma_min - sigma_max)).to(",
        "loses": ["test_noise_levels"],
    },
    {
        "name": "sigmas-increasing-order",
        "cell": "noise_levels",
        "find": "log_sigmas.exp().to(",
        "replace": "log_sigmas.exp().flip(0).to(",
        "loses": ["test_noise_levels"],
    },
    {
        "name": "sigmas-accept-bad-range",
        "cell": "noise_levels",
        "find": "if not (0 < sigma_min < sigma_max) or L < 2:",
        "replace": "if L < 1:",
        "loses": ["test_noise_levels"],
    },
    # Exercise 2: ncsn_loss
    {
        "name": "loss-lambda-one-instead-of-sigma-squared",
        "cell": "ncsn_loss",
        "find": "residual = sigma_b * s + z",
        "replace": "residual = s + z / sigma_b",
        "loses": ["test_ncsn_loss"],
    },
    {
        "name": "loss-target-z-over-sigma-squared",
        "cell": "ncsn_loss",
        "find": "residual = sigma_b * s + z",
        "replace": "residual = sigma_b * s + z / sigma_b",
        "loses": ["test_ncsn_loss"],
    },
    {
        "name": "loss-noise-drawn-before-levels",
        "cell": "ncsn_loss",
        "find": "    idx = torch.randint(0, sigmas.numel(), (x.shape[0],), generator=generator).to(x.device)\n    z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)",
        "replace": "    z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)\n    idx = torch.randint(0, sigmas.numel(), (x.shape[0],), generator=generator).to(x.device)",
        "loses": ["test_ncsn_loss"],
    },
    {
        "name": "loss-sum-over-batch",
        "cell": "ncsn_loss",
        "find": ".sum(1).mean()",
        "replace": ".sum(1).sum()",
        "loses": ["test_ncsn_loss"],
    },
    # Exercise 3: langevin_level
    {
        "name": "level-noise-sqrt-alpha-instead-of-sqrt-2-alpha",
        "cell": "langevin_level",
        "find": "noise_scale = (2 * torch.as_tensor(alpha, dtype=x.dtype, device=x.device)).sqrt()",
        "replace": "noise_scale = torch.as_tensor(alpha, dtype=x.dtype, device=x.device).sqrt()",
        # the sampler of Exercise 4 reuses langevin_level
        "loses": ["test_langevin_level", "test_annealed_langevin_sampler"],
    },
    {
        "name": "level-noise-before-score",
        "cell": "langevin_level",
        "find": "            s = score_fn(x, sigma_batch)\n            z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)",
        "replace": "            z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)\n            x = x + noise_scale * z\n            z = torch.zeros_like(x)\n            s = score_fn(x, sigma_batch)",
        "loses": ["test_langevin_level", "test_annealed_langevin_sampler"],
    },
    {
        "name": "level-step-alpha-over-two",
        "cell": "langevin_level",
        "find": "x = x + alpha * s + noise_scale * z",
        "replace": "x = x + 0.5 * alpha * s + noise_scale * z",
        "loses": ["test_langevin_level", "test_annealed_langevin_sampler"],
    },
    # Exercise 4: annealed_langevin_sampler
    {
        "name": "sampler-alpha-sigma-instead-of-sigma-squared",
        "cell": "annealed_langevin_sampler",
        "find": "alpha = eps * sigma**2 / sigma_L**2",
        "replace": "alpha = eps * sigma / sigma_L",
        "loses": ["test_annealed_langevin_sampler"],
    },
    {
        "name": "sampler-levels-in-increasing-order",
        "cell": "annealed_langevin_sampler",
        "find": "for sigma in sigmas:",
        "replace": "for sigma in sigmas.flip(0):",
        "loses": ["test_annealed_langevin_sampler"],
    },
    {
        "name": "sampler-restarts-each-level-from-x0",
        "cell": "annealed_langevin_sampler",
        "find": "x = langevin_level(score_fn, x, sigma, alpha, T, generator=generator)",
        "replace": "x = langevin_level(score_fn, x0, sigma, alpha, T, generator=generator)",
        "loses": ["test_annealed_langevin_sampler"],
    },
    {
        "name": "sampler-alpha-over-sigma-1",
        "cell": "annealed_langevin_sampler",
        "find": "sigma_L = sigmas[-1]",
        "replace": "sigma_L = sigmas[0]",
        "loses": ["test_annealed_langevin_sampler"],
    },
    # Exercise 5: mode_fractions
    {
        "name": "fractions-farthest-mode",
        "cell": "mode_fractions",
        "find": ".argmin(dim=1)",
        "replace": ".argmax(dim=1)",
        "loses": ["test_mode_fractions"],
    },
    {
        "name": "fractions-counts-not-normalised",
        "cell": "mode_fractions",
        "find": "return counts / x.shape[0]",
        "replace": "return counts",
        "loses": ["test_mode_fractions"],
    },
    {
        "name": "fractions-drop-empty-modes",
        "cell": "mode_fractions",
        "find": "torch.bincount(nearest, minlength=means.shape[0])",
        "replace": "torch.bincount(nearest)",
        "loses": ["test_mode_fractions"],
    },
]
