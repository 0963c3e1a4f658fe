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
    {
        # issue 19 (gradient): the value is right, but no gradient reaches the network's parameters
        "name": "loss-score-detached",
        "cell": "ncsn_loss",
        "find": "s = score_fn(x + sigma_b * z, sigma)",
        "replace": "s = score_fn(x + sigma_b * z, sigma).detach()",
        "loses": ["test_ncsn_loss"],
    },
    {
        # issue 19 (dtype of values passed to a user callback): float32 levels reach score_fn as float32
        "name": "loss-levels-keep-their-dtype",
        "cell": "ncsn_loss",
        "find": "sigmas = torch.as_tensor(sigmas, dtype=x.dtype, device=x.device)",
        "replace": "sigmas = torch.as_tensor(sigmas, device=x.device)",
        "loses": ["test_ncsn_loss"],
    },
    # Exercise 3: langevin_level
    {
        "name": "level-noise-sqrt-alpha-instead-of-sqrt-2-alpha",
        "cell": "langevin_level",
        "find": "noise_scale = (2 * torch.as_tensor(alpha, dtype=x.dtype, device=x.device)).sqrt()",
        "replace": "noise_scale = torch.as_tensor(alpha, dtype=x.dtype, device=x.device).sqrt()",
        # the sampler of Exercise 4 and level_mode_fractions of Exercise 6 reuse langevin_level
        "loses": ["test_langevin_level", "test_annealed_langevin_sampler", "test_level_mode_fractions"],
    },
    {
        "name": "level-noise-before-score",
        "cell": "langevin_level",
        "find": "            s = score_fn(x, sigma_batch)\n            z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)",
        "replace": "            z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)\n            x = x + noise_scale * z\n            z = torch.zeros_like(x)\n            s = score_fn(x, sigma_batch)",
        "loses": ["test_langevin_level", "test_annealed_langevin_sampler", "test_level_mode_fractions"],
    },
    {
        "name": "level-step-alpha-over-two",
        "cell": "langevin_level",
        "find": "x = x + alpha * s + noise_scale * z",
        "replace": "x = x + 0.5 * alpha * s + noise_scale * z",
        "loses": ["test_langevin_level", "test_annealed_langevin_sampler", "test_level_mode_fractions"],
    },
    {
        # issue 19 (detached): x is detached once, but the steps run with autograd on, so a score
        # network's parameters leave a graph on the samples
        "name": "level-graph-kept-through-the-score",
        "cell": "langevin_level",
        "find": "    with torch.no_grad():\n        for _ in range(T):",
        "replace": "    if True:\n        for _ in range(T):",
        "loses": ["test_langevin_level"],
    },
    {
        # issue 19 (dtype of values passed to a user callback): sigma_batch always float64
        "name": "level-sigma-batch-float64",
        "cell": "langevin_level",
        "find": "sigma_batch = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])",
        "replace": "sigma_batch = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).expand(x.shape[0])",
        "loses": ["test_langevin_level", "test_level_mode_fractions"],
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
    {
        # issue 19 (dtype): float32 levels make the steps alpha_i float32 with float64 chains
        "name": "sampler-levels-keep-their-dtype",
        "cell": "annealed_langevin_sampler",
        "find": "sigmas = torch.as_tensor(sigmas, dtype=x0.dtype, device=x0.device)",
        "replace": "sigmas = torch.as_tensor(sigmas, device=x0.device)",
        "loses": ["test_annealed_langevin_sampler"],
    },
    {
        # issue 19 (raises): empty or 2-D levels are not refused with ValueError (they fail later,
        # with IndexError / RuntimeError)
        "name": "sampler-levels-shape-unchecked",
        "cell": "annealed_langevin_sampler",
        "find": "if sigmas.dim() != 1 or sigmas.numel() < 1 or not bool((sigmas > 0).all()):",
        "replace": "if not bool((sigmas > 0).all()):",
        "loses": ["test_annealed_langevin_sampler"],
    },
    # Exercise 5: mode_fractions
    {
        "name": "fractions-farthest-mode",
        "cell": "mode_fractions",
        "find": ".argmin(dim=1)",
        "replace": ".argmax(dim=1)",
        "loses": ["test_mode_fractions", "test_level_mode_fractions"],
    },
    {
        "name": "fractions-counts-not-normalised",
        "cell": "mode_fractions",
        "find": "return counts / x.shape[0]",
        "replace": "return counts",
        "loses": ["test_mode_fractions", "test_level_mode_fractions"],
    },
    {
        "name": "fractions-drop-empty-modes",
        "cell": "mode_fractions",
        "find": "torch.bincount(nearest, minlength=means.shape[0])",
        "replace": "torch.bincount(nearest)",
        "loses": ["test_mode_fractions"],
    },
    {
        # issue 19 (a rule the spec fixes): ties go to the higher index
        "name": "fractions-ties-to-higher-index",
        "cell": "mode_fractions",
        "find": "nearest = torch.cdist(x, means).argmin(dim=1)",
        "replace": "nearest = means.shape[0] - 1 - torch.cdist(x, means.flip(0)).argmin(dim=1)",
        "loses": ["test_mode_fractions"],
    },
    # Exercise 6 (transfer): linear_noise_levels and level_mode_fractions
    {
        "name": "linear-levels-geometric",
        "cell": "linear_noise_levels",
        "find": "levels = sigma_max - fraction * (sigma_max - sigma_min)",
        "replace": "levels = sigma_max * (sigma_min / sigma_max) ** fraction",
        "loses": ["test_level_mode_fractions"],
    },
    {
        "name": "linear-levels-smallest-first",
        "cell": "linear_noise_levels",
        "find": "levels = sigma_max - fraction * (sigma_max - sigma_min)",
        "replace": "levels = sigma_min + fraction * (sigma_max - sigma_min)",
        "loses": ["test_level_mode_fractions"],
    },
    {
        "name": "level-fractions-recorded-before-each-level",
        "cell": "linear_noise_levels",
        "find": "        x = langevin_level(score_fn, x, sigma, eps * sigma**2 / sigmas[-1] ** 2, T, generator=generator)\n        rows.append(mode_fractions(x, means))",
        "replace": "        rows.append(mode_fractions(x, means))\n        x = langevin_level(score_fn, x, sigma, eps * sigma**2 / sigmas[-1] ** 2, T, generator=generator)",
        "loses": ["test_level_mode_fractions"],
    },
    {
        "name": "level-fractions-constant-step",
        "cell": "linear_noise_levels",
        "find": "eps * sigma**2 / sigmas[-1] ** 2, T",
        "replace": "eps, T",
        "loses": ["test_level_mode_fractions"],
    },
    {
        # a plausible wrong model of the experiment: no annealing, every level run at the smallest
        # sigma (the outcome check against the exact fractions fails; nb07_level_fractions' weaker model)
        "name": "level-fractions-without-annealing",
        "cell": "linear_noise_levels",
        "find": "x = langevin_level(score_fn, x, sigma, eps * sigma**2 / sigmas[-1] ** 2, T",
        "replace": "x = langevin_level(score_fn, x, sigmas[-1], eps, T",
        "loses": ["test_level_mode_fractions"],
    },
    # Exercise 7 (derivation)
    {
        "name": "derivation-sigma-not-added-to-the-component-variance",
        "cell": "fraction_at_sigma_3",
        "find": "math.sqrt(1 + 3.0**2)",
        "replace": "3.0",
        "loses": ["test_fraction_at_sigma_3"],
    },
    # a correct solution written another way must pass every hidden test
    {
        "name": "correct-linear-ladder-by-linspace",
        "cell": "linear_noise_levels",
        "find": "levels = sigma_max - fraction * (sigma_max - sigma_min)",
        "replace": "levels = torch.linspace(sigma_max, sigma_min, L, dtype=torch.float64)",
        "loses": [],
    },
]
