"""Wrong implementations of assignment 01-change-of-variables: see tests/mutants/__init__.py."""

MUTANTS = [
    # Exercise 1: affine_log_prob
    {
        "name": "affine-missing-log-det",
        "cell": "affine_log_prob",
        "find": "- 0.5 * math.log(2 * math.pi) - log_abs_a",
        "replace": "- 0.5 * math.log(2 * math.pi)",
        "loses": ["test_affine_log_prob"],
    },
    {
        "name": "affine-log-a-instead-of-log-abs-a",
        "cell": "affine_log_prob",
        "find": "torch.log(torch.abs(a))",
        "replace": "torch.log(a)",
        "loses": ["test_affine_log_prob"],
    },
    {
        "name": "affine-accepts-zero-scale",
        "cell": "affine_log_prob",
        "find": "if (a == 0).any():",
        "replace": "if False:",
        "loses": ["test_affine_log_prob"],
    },
    # Exercise 2: mixture_cdf
    {
        "name": "mixture-sign-error-in-standardisation",
        "cell": "mixture_cdf",
        "find": "(x.unsqueeze(-1) - means)",
        "replace": "(means - x.unsqueeze(-1))",
        # the density is symmetric in the sign and Beta(5, 5) is symmetric about 1/2,
        # so the likelihood (and the fit) are unaffected: only the CDF tests catch it
        "loses": ["test_mixture_cdf_values", "test_mixture_cdf_properties"],
    },
    {
        "name": "mixture-logits-without-softmax",
        "cell": "mixture_cdf",
        "find": "log_w = torch.log_softmax(logits, dim=-1)",
        "replace": "log_w = logits",
        "loses": ["test_mixture_cdf_values", "test_mixture_cdf_properties", "test_cdf_flow_nll", "test_fit_cdf_flow"],
    },
    {
        "name": "mixture-density-missing-log-scale",
        "cell": "mixture_cdf",
        "find": "log_phi - log_scales",
        "replace": "log_phi",
        "loses": ["test_mixture_cdf_values", "test_mixture_cdf_properties", "test_cdf_flow_nll", "test_fit_cdf_flow"],
    },
    {
        "name": "mixture-density-not-in-log-space",
        "cell": "mixture_cdf",
        "find": "log_density = (log_w + log_phi - log_scales).logsumexp(dim=-1)",
        "replace": "log_density = torch.log((log_w + log_phi - log_scales).exp().sum(dim=-1))",
        "loses": ["test_mixture_cdf_properties"],
    },
    # Exercise 3: invert_by_bisection
    {
        "name": "bisection-updates-wrong-side",
        "cell": "invert_by_bisection",
        "find": "left = torch.where(root_right_of_mid, mid, left)\n        right = torch.where(root_right_of_mid, right, mid)",
        "replace": "left = torch.where(root_right_of_mid, left, mid)\n        right = torch.where(root_right_of_mid, mid, right)",
        "loses": ["test_invert_by_bisection"],
    },
    {
        "name": "bisection-python-loop-over-elements",
        "cell": "invert_by_bisection",
        "find": "root_right_of_mid = f(mid) < u",
        "replace": "root_right_of_mid = torch.stack([f(m) for m in mid.reshape(-1)]).reshape(u.shape) < u",
        "loses": ["test_invert_by_bisection"],
    },
    # Exercise 4: cdf_flow_nll
    {
        "name": "nll-without-log-det",
        "cell": "cdf_flow_nll",
        "find": "-(log_base + log_det).mean()",
        "replace": "-log_base.mean()",
        "loses": ["test_cdf_flow_nll", "test_fit_cdf_flow"],
    },
    {
        "name": "nll-summed-instead-of-mean",
        "cell": "cdf_flow_nll",
        "find": "-(log_base + log_det).mean()",
        "replace": "-(log_base + log_det).sum()",
        "loses": ["test_cdf_flow_nll"],
    },
    {
        "name": "nll-beta-missing-normaliser",
        "cell": "cdf_flow_nll",
        "find": " + math.log(630.0)",
        "replace": "",
        "loses": ["test_cdf_flow_nll"],
    },
    # Exercise 5: fit_cdf_flow
    {
        "name": "fit-gradient-ascent",
        "cell": "fit_cdf_flow",
        "find": "loss = cdf_flow_nll(",
        "replace": "loss = -cdf_flow_nll(",
        "loses": ["test_fit_cdf_flow"],
    },
    {
        "name": "fit-never-steps",
        "cell": "fit_cdf_flow",
        "find": "optimizer.step()",
        "replace": "pass",
        "loses": ["test_fit_cdf_flow"],
    },
    # Exercise 6: squared_normal_log_prob (a map that is not one-to-one)
    {
        "name": "squared-one-preimage-only",
        "cell": "squared_normal_log_prob",
        "find": "torch.logaddexp(right, left)",
        "replace": "right",
        "loses": ["test_squared_normal_log_prob"],
    },
    {
        "name": "squared-missing-jacobian",
        "cell": "squared_normal_log_prob",
        "find": " - math.log(2.0) - torch.log(root)",
        "replace": "",
        "loses": ["test_squared_normal_log_prob"],
    },
    {
        # right except in the far tail, where both Gaussian densities underflow
        "name": "squared-sum-of-densities-not-in-log-space",
        "cell": "squared_normal_log_prob",
        "find": "torch.logaddexp(right, left)",
        "replace": "torch.log(right.exp() + left.exp())",
        "loses": ["test_squared_normal_log_prob"],
    },
    {
        # right values, NaN gradients from the branch that torch.where discards
        "name": "squared-nan-in-discarded-branch",
        "cell": "squared_normal_log_prob",
        "find": "root = torch.sqrt(torch.where(positive, x, torch.ones_like(x)))",
        "replace": "root = torch.sqrt(x)",
        "loses": ["test_squared_normal_log_prob"],
    },
    {
        "name": "squared-accepts-negative-sigma",
        "cell": "squared_normal_log_prob",
        "find": "if (sigma <= 0).any():",
        "replace": "if (sigma == 0).all():",
        "loses": ["test_squared_normal_log_prob"],
    },
    {
        "name": "squared-zero-gives-minus-inf",
        "cell": "squared_normal_log_prob",
        "find": ".masked_fill(x == 0, math.inf)",
        "replace": "",
        "loses": ["test_squared_normal_log_prob"],
    },
    # Exercise 7: the tanh derivation
    {
        "name": "tanh-derivation-log-det-with-wrong-sign",
        "cell": "tanh_normal_derivation",
        "find": "+ math.log(4 / 3)",
        "replace": "- math.log(4 / 3)",
        "loses": ["test_tanh_normal_derivation"],
    },
    {
        "name": "tanh-derivation-evaluated-at-x-not-z",
        "cell": "tanh_normal_derivation",
        "find": "-math.log(3) ** 2 / 8",
        "replace": "-0.5 ** 2 / 2",
        "loses": ["test_tanh_normal_derivation"],
    },
    {
        "name": "tanh-derivation-as-a-tensor",
        "cell": "tanh_normal_derivation",
        "find": "TANH_NORMAL_LOG_DENSITY_AT_HALF = ",
        "replace": "TANH_NORMAL_LOG_DENSITY_AT_HALF = torch.tensor(0.0) + ",
        "loses": ["test_tanh_normal_derivation"],
    },
    # a correct solution in another style: the sum of the two densities, computed with
    # torch.distributions, a clamp for the discarded branch, and explicit edge handling
    {
        "name": "squared-correct-other-style",
        "cell": "squared_normal_log_prob",
        "find": "    mu = torch.as_tensor(mu, dtype=x.dtype, device=x.device)\n",
        "replace": (
            "    mu = torch.as_tensor(mu, dtype=x.dtype, device=x.device)\n"
            "    sigma_t = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)\n"
            "    if not bool((sigma_t > 0).all()):\n"
            "        raise ValueError('sigma must be > 0')\n"
            "    s = torch.clamp(x, min=1e-300).sqrt()\n"
            "    normal = torch.distributions.Normal(mu, sigma_t)\n"
            "    both = torch.stack(torch.broadcast_tensors(normal.log_prob(s), normal.log_prob(-s)))\n"
            "    out = both.logsumexp(0) - torch.log(2 * s)\n"
            "    out = torch.where(x > 0, out, torch.where(x < 0, float('-inf'), float('inf')))\n"
            "    return out\n"
        ),
        "loses": [],
    },
]
