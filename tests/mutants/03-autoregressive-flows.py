"""Wrong implementations of assignment 03-autoregressive-flows: see tests/mutants/__init__.py."""

MUTANTS = [
    # Exercise 1: made_masks
    {
        "name": "masks-output-non-strict",
        "cell": "made_masks",
        "find": "(in_degrees[:, None] > prev[None, :])",
        "replace": "(in_degrees[:, None] >= prev[None, :])",
        # output k sees hidden units of its own degree, hence input k itself
        # (fit_maf builds on made_masks: its stack is then no flow, its density integrates to about 100)
        "loses": ["test_made_masks", "test_made_masks_autoregressive", "test_fit_maf"],
    },
    {
        "name": "masks-hidden-strict",
        "cell": "made_masks",
        "find": "(degrees[:, None] >= prev[None, :])",
        "replace": "(degrees[:, None] > prev[None, :])",
        # still autoregressive, but allowed connections are lost (the visible test sees them)
        # (in 2-D no hidden unit sees x_1 then: fit_maf's stack learns no dependence, KL about 1.1 nats)
        "loses": ["test_made_masks", "test_made_masks_autoregressive", "test_fit_maf"],
    },
    {
        "name": "masks-degrees-from-index-not-position",
        "cell": "made_masks",
        "find": "in_degrees[order] = torch.arange(1, D + 1)",
        "replace": "in_degrees[:] = order + 1",
        # equal to the right degrees for the natural and reversed orders only
        "loses": ["test_made_masks", "test_made_masks_autoregressive"],
    },
    {
        "name": "masks-hidden-degrees-from-zero",
        "cell": "made_masks",
        "find": "degrees = torch.arange(width) % max(D - 1, 1) + 1",
        "replace": "degrees = torch.arange(width) % D",
        "loses": ["test_made_masks", "test_made_masks_autoregressive"],
    },
    {
        "name": "masks-accepts-any-order",
        "cell": "made_masks",
        "find": "if order.dim() != 1 or D == 0 or order.is_floating_point() or not torch.equal(order.sort().values, torch.arange(D)):",
        "replace": "if D == 0:",
        "loses": ["test_made_masks"],
    },
    # issue 19: the output dtype the spec fixes (float 0/1 masks), returned as bool
    {
        "name": "masks-bool-output-mask",
        "cell": "made_masks",
        "find": "masks.append((in_degrees[:, None] > prev[None, :]).float())",
        "replace": "masks.append(in_degrees[:, None] > prev[None, :])",
        "loses": ["test_made_masks"],
    },
    # Exercise 2: maf_log_prob
    {
        "name": "maf-log-prob-missing-log-det",
        "cell": "maf_log_prob",
        "find": "return log_base - alpha.sum(dim=1)",
        "replace": "return log_base",
        "loses": ["test_maf_log_prob"],
    },
    {
        "name": "maf-log-prob-sign-error-in-log-scale",
        "cell": "maf_log_prob",
        "find": "z = (x - mu) * torch.exp(-alpha)",
        "replace": "z = (x - mu) * torch.exp(alpha)",
        "loses": ["test_maf_log_prob"],
    },
    {
        "name": "maf-log-prob-log-det-sign",
        "cell": "maf_log_prob",
        "find": "return log_base - alpha.sum(dim=1)",
        "replace": "return log_base + alpha.sum(dim=1)",
        "loses": ["test_maf_log_prob"],
    },
    {
        "name": "maf-log-prob-missing-normaliser",
        "cell": "maf_log_prob",
        "find": " - 0.5 * x.shape[1] * math.log(2 * math.pi)",
        "replace": "",
        "loses": ["test_maf_log_prob"],
    },
    # issue 19: right value, wrong gradient: the conditioner run without autograd, so the
    # log-density cannot train the MADE
    {
        "name": "maf-log-prob-conditioner-without-grad",
        "cell": "maf_log_prob",
        "find": "    mu, alpha = conditioner(x)\n",
        "replace": "    with torch.no_grad():\n        mu, alpha = conditioner(x)\n",
        "loses": ["test_maf_log_prob"],
    },
    # Exercise 3: maf_sample
    {
        "name": "maf-sample-one-pass",
        "cell": "maf_sample",
        "find": "for _ in range(z.shape[1]):",
        "replace": "for _ in range(1):",
        "loses": ["test_maf_sample"],
    },
    {
        "name": "maf-sample-log-det-sign",
        "cell": "maf_sample",
        "find": "return x, alpha.sum(dim=1)",
        "replace": "return x, -alpha.sum(dim=1)",
        "loses": ["test_maf_sample"],
    },
    {
        "name": "maf-sample-uses-density-formula",
        "cell": "maf_sample",
        "find": "x = mu + z * torch.exp(alpha)",
        "replace": "x = (z - mu) * torch.exp(-alpha)",
        "loses": ["test_maf_sample"],
    },
    # issue 19: right values, wrong gradients: each pass reads a detached x, so dx/dz and the
    # log-det's gradient miss the dependence through x_<k
    {
        "name": "maf-sample-passes-detached",
        "cell": "maf_sample",
        "find": "mu, alpha = conditioner(x)",
        "replace": "mu, alpha = conditioner(x.detach())",
        "loses": ["test_maf_sample"],
    },
    # Exercise 4: iaf_sample
    {
        "name": "iaf-computed-in-maf-direction",
        "cell": "iaf_sample",
        "find": "mu, alpha = conditioner(z)\n    x = (z - mu) * torch.exp(-alpha)",
        "replace": (
            "x = torch.zeros_like(z)\n"
            "    for _ in range(z.shape[1]):\n"
            "        mu, alpha = conditioner(x)\n"
            "        x = mu + z * torch.exp(alpha)\n"
            "    alpha = -alpha"
        ),
        "loses": ["test_iaf_sample"],
    },
    {
        "name": "iaf-log-q-sign-error",
        "cell": "iaf_sample",
        "find": "return x, log_base + alpha.sum(dim=1)",
        "replace": "return x, log_base - alpha.sum(dim=1)",
        "loses": ["test_iaf_sample"],
    },
    {
        "name": "iaf-log-scale-sign-error",
        "cell": "iaf_sample",
        "find": "x = (z - mu) * torch.exp(-alpha)",
        "replace": "x = (z - mu) * torch.exp(alpha)",
        "loses": ["test_iaf_sample"],
    },
    # issue 19: right values, wrong gradient with respect to z (the conditioner reads a detached z)
    {
        "name": "iaf-conditioner-reads-detached-noise",
        "cell": "iaf_sample",
        "find": "mu, alpha = conditioner(z)",
        "replace": "mu, alpha = conditioner(z.detach())",
        "loses": ["test_iaf_sample"],
    },
    # Exercise 5: is_lower_triangular
    {
        "name": "triangular-checks-upper-triangle",
        "cell": "is_lower_triangular",
        "find": ".tril(diagonal=-1 if strict else 0)",
        "replace": ".triu(diagonal=1 if strict else 0)",
        "loses": ["test_is_lower_triangular"],
    },
    {
        "name": "triangular-ignores-strict",
        "cell": "is_lower_triangular",
        "find": ".tril(diagonal=-1 if strict else 0)",
        "replace": ".tril(diagonal=0)",
        "loses": ["test_is_lower_triangular"],
    },
    {
        "name": "triangular-first-row-only",
        "cell": "is_lower_triangular",
        "find": "for i in range(x.shape[0]):",
        "replace": "for i in range(1):",
        "loses": ["test_is_lower_triangular"],
    },
    {
        "name": "triangular-no-tolerance",
        "cell": "is_lower_triangular",
        "find": "(J.abs() > atol)",
        "replace": "(J.abs() > 0)",
        "loses": ["test_is_lower_triangular"],
    },
    # issue 19: a raises clause of the spec ("x not 2-D") half implemented: 3-D and 0-D x get through
    {
        "name": "triangular-raises-only-for-1d",
        "cell": "is_lower_triangular",
        "find": "if x.dim() != 2:",
        "replace": "if x.dim() == 1:",
        "loses": ["test_is_lower_triangular"],
    },
    # Exercise 6 (issue 13, transfer): gaussian_maf_params
    {
        "name": "gaussian-alpha-is-log-variance",
        "cell": "gaussian_maf_params",
        "find": "return B, c, torch.log(d)",
        "replace": "return B, c, 2 * torch.log(d)",
        "loses": ["test_gaussian_maf_params"],
    },
    {
        "name": "gaussian-B-from-the-cholesky-factor",
        "cell": "gaussian_maf_params",
        "find": "B = -(d[:, None] * L_inv).tril(diagonal=-1)",
        "replace": "B = L.tril(diagonal=-1)",
        "loses": ["test_gaussian_maf_params"],
    },
    {
        "name": "gaussian-c-is-the-mean",
        "cell": "gaussian_maf_params",
        "find": "c = mean - B @ mean",
        "replace": "c = mean",
        # right for a diagonal covariance or a zero mean only
        "loses": ["test_gaussian_maf_params"],
    },
    {
        "name": "gaussian-accepts-asymmetric-cov",
        "cell": "gaussian_maf_params",
        "find": "if not torch.allclose(cov, cov.T):",
        "replace": "if False:",
        "loses": ["test_gaussian_maf_params"],
    },
    {
        "name": "gaussian-detached",
        "cell": "gaussian_maf_params",
        "find": "L, info = torch.linalg.cholesky_ex(cov)",
        "replace": "L, info = torch.linalg.cholesky_ex(cov.detach())\n    mean = mean.detach()",
        "loses": ["test_gaussian_maf_params"],
    },
    {
        # a correct solution in another style (conditional-Gaussian formulas, a loop over k): full marks
        "name": "gaussian-conditional-formulas-correct",
        "cell": "gaussian_maf_params",
        "find": "    d = torch.diagonal(L)\n",
        "replace": (
            "    rows, scales = [], []\n"
            "    for k in range(D):\n"
            "        S11, s12 = cov[:k, :k], cov[:k, k]\n"
            "        w = torch.linalg.solve(S11, s12) if k else cov.new_zeros(0)\n"
            "        rows.append(torch.cat([w, cov.new_zeros(D - k)]))\n"
            "        scales.append(0.5 * torch.log(cov[k, k] - s12 @ w))\n"
            "    B = torch.stack(rows)\n"
            "    return B, mean - B @ mean, torch.stack(scales)\n"
            "    d = torch.diagonal(L)\n"
        ),
        "loses": [],
    },
    # Exercise 7 (issue 13, training graded by outcome): fit_maf
    {
        "name": "fit-maf-same-order-in-every-layer",
        "cell": "fit_maf",
        "find": "order = list(range(D))[::-1] if alternate and layer % 2 else list(range(D))",
        "replace": "order = list(range(D))",
        # trains, but x_1's marginal stays Gaussian: KL about 0.95 nats on the ring
        "loses": ["test_fit_maf"],
    },
    {
        "name": "fit-maf-log-det-detached",
        "cell": "fit_maf",
        "find": "total = total - alpha.sum(dim=1)",
        "replace": "total = total - alpha.detach().sum(dim=1)",
        # the same log_prob values, but the loss never sees the volume term: training shrinks z
        "loses": ["test_fit_maf"],
    },
    {
        "name": "fit-maf-log-det-missing",
        "cell": "fit_maf",
        "find": "total = total - alpha.sum(dim=1)",
        "replace": "total = total",
        # not a density any more: caught by the integral over the box
        "loses": ["test_fit_maf"],
    },
    # Exercise 8 (issue 13, derivation): BANANA_MOMENTS
    {
        "name": "banana-variance-without-the-noise-term",
        "cell": "banana_moments",
        "find": "BANANA_MOMENTS = (1.0, 2.0 + math.exp(0.5))",
        "replace": "BANANA_MOMENTS = (1.0, 2.0 + math.exp(0.25))",
        # E[e^{z1/2}]^2 in place of E[e^{z1}]
        "loses": ["test_banana_moments"],
    },
]
