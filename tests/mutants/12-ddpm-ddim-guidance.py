"""Wrong implementations of assignment 12-ddpm-ddim-guidance: see tests/mutants/__init__.py."""

# q_sample is reused by simple_loss (the reference computes x_n with it), so a wrong marginal
# also loses the loss's cell. The training exercise writes its own noising (the grader samples
# the trained network with its own DDIM), so only train_guided's mutants can lose it.
WITH_LOSS = ["test_q_sample", "test_simple_loss"]

MUTANTS = [
    # Exercise 1: q_sample
    {
        "name": "q-alpha-n-instead-of-alpha-bar",
        "cell": "q_sample",
        "find": "abar = torch.cumprod(1 - betas.to(device=x0.device, dtype=torch.float64), 0)[n - 1]",
        "replace": "abar = (1 - betas.to(device=x0.device, dtype=torch.float64))[n - 1]",
        "loses": WITH_LOSS,
    },
    {
        "name": "q-alpha-bar-off-by-one",
        "cell": "q_sample",
        "find": "abar = torch.cumprod(1 - betas.to(device=x0.device, dtype=torch.float64), 0)[n - 1]",
        "replace": "abar = torch.cumprod(1 - betas.to(device=x0.device, dtype=torch.float64), 0)[n.clamp(max=betas.numel() - 1)]",
        "loses": WITH_LOSS,
    },
    {
        "name": "q-variance-instead-of-std",
        "cell": "q_sample",
        "find": "return ab.sqrt() * x0 + (1 - ab).sqrt() * noise",
        "replace": "return ab.sqrt() * x0 + (1 - ab) * noise",
        "loses": WITH_LOSS,
    },
    {
        "name": "q-alpha-bar-in-float32",
        "cell": "q_sample",
        "find": "abar = torch.cumprod(1 - betas.to(device=x0.device, dtype=torch.float64), 0)[n - 1]",
        "replace": "abar = torch.cumprod(1 - betas.to(device=x0.device, dtype=torch.float32), 0)[n - 1]",
        "loses": WITH_LOSS,
    },
    {
        # the raises clause on the range: n = 0 silently reads abar_N (index -1)
        "name": "timesteps-range-unchecked",
        "cell": "q_sample",
        "find": "    if ((n < 1) | (n > N)).any():\n",
        "replace": "    if False:\n",
        "loses": WITH_LOSS,
    },
    # Exercise 2: simple_loss
    {
        "name": "loss-mean-over-coordinates",
        "cell": "simple_loss",
        "find": "return err.reshape(x0.shape[0], -1).pow(2).sum(1).mean()",
        "replace": "return err.pow(2).mean()",
        "loses": ["test_simple_loss"],
    },
    {
        "name": "loss-t-is-n-not-n-over-N",
        "cell": "simple_loss",
        "find": "err = noise - eps_fn(x_n, n.to(x0.dtype) / N)",
        "replace": "err = noise - eps_fn(x_n, n.to(x0.dtype))",
        "loses": ["test_simple_loss"],
    },
    {
        "name": "loss-detached-x-n",
        "cell": "simple_loss",
        "find": "err = noise - eps_fn(x_n, n.to(x0.dtype) / N)",
        "replace": "err = noise - eps_fn(x_n.detach(), n.to(x0.dtype) / N)",
        "loses": ["test_simple_loss"],
    },
    {
        "name": "loss-predicts-x0-target",
        "cell": "simple_loss",
        "find": "err = noise - eps_fn(x_n, n.to(x0.dtype) / N)",
        "replace": "err = x0 - eps_fn(x_n, n.to(x0.dtype) / N)",
        "loses": ["test_simple_loss"],
    },
    # Exercise 3: ancestral_step
    {
        "name": "ancestral-noise-at-the-last-step",
        "cell": "ancestral_step",
        "find": "return mean + math.sqrt(beta) * z if n > 1 else mean",
        "replace": "return mean + math.sqrt(beta) * z",
        "loses": ["test_ancestral_step"],
    },
    {
        "name": "ancestral-sigma-is-beta",
        "cell": "ancestral_step",
        "find": "return mean + math.sqrt(beta) * z if n > 1 else mean",
        "replace": "return mean + beta * z if n > 1 else mean",
        "loses": ["test_ancestral_step"],
    },
    {
        "name": "ancestral-coefficient-without-sqrt",
        "cell": "ancestral_step",
        "find": "mean = (x - beta / math.sqrt(1 - abar) * eps) / math.sqrt(1 - beta)",
        "replace": "mean = (x - beta / (1 - abar) * eps) / math.sqrt(1 - beta)",
        "loses": ["test_ancestral_step"],
    },
    {
        "name": "ancestral-alpha-bar-one-step-late",
        "cell": "ancestral_step",
        "find": "abar = torch.prod(1 - betas[:n]).item()",
        "replace": "abar = torch.prod(1 - betas[:n - 1]).item() if n > 1 else beta",
        "loses": ["test_ancestral_step"],
    },
    # Exercise 4: ddim_step
    {
        "name": "ddim-alpha-bar-0-from-index-minus-1",
        "cell": "ddim_step",
        "find": "ab_prev = abar[n_prev - 1].item() if n_prev > 0 else 1.0",
        "replace": "ab_prev = abar[n_prev - 1].item()",
        "loses": ["test_ddim_step"],
    },
    {
        "name": "ddim-drops-the-eps-term",
        "cell": "ddim_step",
        "find": "return math.sqrt(ab_prev) * x0_hat + math.sqrt(1 - ab_prev) * eps",
        "replace": "return math.sqrt(ab_prev) * x0_hat",
        "loses": ["test_ddim_step"],
    },
    {
        "name": "ddim-accepts-n-prev-equal-n",
        "cell": "ddim_step",
        "find": "not 0 <= n_prev < n <= N:",
        "replace": "not 0 <= n_prev <= n <= N:",
        "loses": ["test_ddim_step"],
    },
    # Exercise 5: guided_eps
    {
        "name": "guidance-weights-swapped",
        "cell": "guided_eps",
        "find": "return (1 + w) * eps_fn(x, t, y) - w * eps_fn(x, t, null)",
        "replace": "return w * eps_fn(x, t, y) - (w - 1) * eps_fn(x, t, null)",
        "loses": ["test_guided_eps"],
    },
    {
        "name": "guidance-interpolates",
        "cell": "guided_eps",
        "find": "return (1 + w) * eps_fn(x, t, y) - w * eps_fn(x, t, null)",
        "replace": "return (eps_fn(x, t, y) + w * eps_fn(x, t, null)) / (1 + w)",
        "loses": ["test_guided_eps"],
    },
    {
        "name": "guidance-negative-w-accepted",
        "cell": "guided_eps",
        "find": "    if w < 0:\n",
        "replace": "    if w < -1:\n",
        "loses": ["test_guided_eps"],
    },
    # Exercise 6: gaussian_eps (transfer)
    {
        "name": "gauss-forgets-the-mean",
        "cell": "gaussian_eps",
        "find": "return (1 - ab).sqrt() * (x - ab.sqrt() * mean) / (ab * std**2 + 1 - ab)",
        "replace": "return (1 - ab).sqrt() * x / (ab * std**2 + 1 - ab)",
        "loses": ["test_gaussian_eps"],
    },
    {
        "name": "gauss-std-not-squared",
        "cell": "gaussian_eps",
        "find": "return (1 - ab).sqrt() * (x - ab.sqrt() * mean) / (ab * std**2 + 1 - ab)",
        "replace": "return (1 - ab).sqrt() * (x - ab.sqrt() * mean) / (ab * std + 1 - ab)",
        "loses": ["test_gaussian_eps"],
    },
    {
        "name": "gauss-unit-data-variance",
        "cell": "gaussian_eps",
        "find": "return (1 - ab).sqrt() * (x - ab.sqrt() * mean) / (ab * std**2 + 1 - ab)",
        "replace": "return (1 - ab).sqrt() * (x - ab.sqrt() * mean)",
        "loses": ["test_gaussian_eps"],
    },
    {
        "name": "gauss-alpha-bar-one-accepted",
        "cell": "gaussian_eps",
        "find": "not ((ab > 0) & (ab < 1)).all()",
        "replace": "not ((ab > 0) & (ab <= 1)).all()",
        "loses": ["test_gaussian_eps"],
    },
    # Exercise 7: train_guided (outcome)
    {
        # the bug class the chapter warns about: the null label is never trained. Its guided samples
        # miss the bound on 5 of the 8 seeds measured for bench/outcome-margins.json (the untrained null
        # embedding is sometimes harmless by luck), among them the default grading seed 0 used here
        "name": "train-without-label-dropout",
        "cell": "train_guided",
        "find": "drop = (torch.rand(256) < 0.2).to(dev)",
        "replace": "drop = (torch.rand(256) < 0.0).to(dev)",
        "loses": ["test_train_guided"],
    },
    {
        # the network is told n instead of t = n / N: its time features are those of integers, and
        # the grader's sampler asks it at t = n / 1000, which it never saw
        "name": "train-time-input-n-not-n-over-N",
        "cell": "train_guided",
        "find": "loss = (noise - net(x_n, n.float() / 1000, y)).pow(2).sum(1).mean()",
        "replace": "loss = (noise - net(x_n, n.float(), y)).pow(2).sum(1).mean()",
        "loses": ["test_train_guided"],
    },
    # Exercise 8: derivation
    {
        "name": "min-loss-one-coordinate",
        "cell": "min_simple_loss",
        "find": "MIN_SIMPLE_LOSS = 3 * 0.3 * 1.5**2 / (0.3 * 1.5**2 + 1 - 0.3)",
        "replace": "MIN_SIMPLE_LOSS = 0.3 * 1.5**2 / (0.3 * 1.5**2 + 1 - 0.3)",
        "loses": ["test_min_simple_loss"],
    },
    {
        "name": "min-loss-posterior-mean-variance",
        "cell": "min_simple_loss",
        "find": "MIN_SIMPLE_LOSS = 3 * 0.3 * 1.5**2 / (0.3 * 1.5**2 + 1 - 0.3)",
        "replace": "MIN_SIMPLE_LOSS = 3 * (1 - 0.3) / (0.3 * 1.5**2 + 1 - 0.3)",
        "loses": ["test_min_simple_loss"],
    },
    # a correct solution in another style
    {
        "name": "correct-log-space-alpha-bar",
        "cell": "q_sample",
        "find": "abar = torch.cumprod(1 - betas.to(device=x0.device, dtype=torch.float64), 0)[n - 1]",
        "replace": "abar = torch.exp(torch.cumsum(torch.log1p(-betas.to(device=x0.device, dtype=torch.float64)), 0))[n - 1]",
        "loses": [],
    },
]
