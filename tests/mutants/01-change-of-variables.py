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
]
