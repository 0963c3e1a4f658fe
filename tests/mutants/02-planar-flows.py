"""Wrong implementations of assignment 02-planar-flows: see tests/mutants/__init__.py."""

MUTANTS = [
    # Exercise 1: planar_u_hat
    {
        "name": "u-hat-returns-u",
        "cell": "planar_u_hat",
        "find": "return u + (m - wu) * w / torch.dot(w, w)",
        "replace": "return u",
        # the unconstrained u is also what the reverse KL then uses
        "loses": ["test_planar_u_hat", "test_planar_reverse_kl", "test_fit_planar_flow"],
    },
    {
        "name": "u-hat-norm-instead-of-squared-norm",
        "cell": "planar_u_hat",
        "find": "w / torch.dot(w, w)",
        "replace": "w / torch.linalg.vector_norm(w)",
        "loses": ["test_planar_u_hat", "test_planar_reverse_kl", "test_fit_planar_flow"],
    },
    {
        "name": "u-hat-without-minus-one",
        "cell": "planar_u_hat",
        "find": "m = -1.0 + F.softplus(wu)",
        "replace": "m = F.softplus(wu)",
        "loses": ["test_planar_u_hat", "test_planar_reverse_kl", "test_fit_planar_flow"],
    },
    # issue 19: a value that is right with a gradient that is wrong (an intermediate detached);
    # the reverse KL's gradient, checked against the reference's, inherits it
    {
        "name": "u-hat-detached-norm",
        "cell": "planar_u_hat",
        "find": "w / torch.dot(w, w)",
        "replace": "w / torch.dot(w, w).detach()",
        "loses": ["test_planar_u_hat", "test_planar_reverse_kl", "test_fit_planar_flow"],
    },
    # issue 19: the extreme the spec names (a numerically stable softplus): exp overflows at w.u = 800
    {
        "name": "u-hat-naive-softplus",
        "cell": "planar_u_hat",
        "find": "m = -1.0 + F.softplus(wu)",
        "replace": "m = -1.0 + torch.log(1 + torch.exp(wu))",
        "loses": ["test_planar_u_hat"],
    },
    # Exercise 2: planar_map
    {
        "name": "map-without-bias",
        "cell": "planar_map",
        "find": "a = z @ w + b",
        "replace": "a = z @ w",
        "loses": ["test_planar_map", "test_planar_reverse_kl", "test_fit_planar_flow"],
    },
    {
        "name": "map-sigmoid-instead-of-tanh",
        "cell": "planar_map",
        "find": "torch.tanh(a)",
        "replace": "torch.sigmoid(a)",
        "loses": ["test_planar_map", "test_planar_reverse_kl", "test_fit_planar_flow"],
    },
    # Exercise 3: planar_log_det
    {
        "name": "log-det-missing-abs",
        "cell": "planar_log_det",
        "find": "torch.log(torch.abs(1.0 + h_prime * torch.dot(u_hat, w)))",
        "replace": "torch.log(1.0 + h_prime * torch.dot(u_hat, w))",
        # with the constrained u_hat of the stack the argument is always positive: only the
        # unconstrained log-det cases catch it
        "loses": ["test_planar_log_det"],
    },
    {
        "name": "log-det-h-instead-of-h-prime",
        "cell": "planar_log_det",
        "find": "h_prime = 1.0 - h**2",
        "replace": "h_prime = h",
        "loses": ["test_planar_log_det", "test_planar_reverse_kl", "test_fit_planar_flow"],
    },
    {
        "name": "log-det-derivative-not-squared",
        "cell": "planar_log_det",
        "find": "h_prime = 1.0 - h**2",
        "replace": "h_prime = 1.0 - h",
        "loses": ["test_planar_log_det", "test_planar_reverse_kl", "test_fit_planar_flow"],
    },
    # issue 19: right value, wrong gradient (h' treated as a constant)
    {
        "name": "log-det-detached-tanh",
        "cell": "planar_log_det",
        "find": "h = torch.tanh(z @ w + b)",
        "replace": "h = torch.tanh(z @ w + b).detach()",
        "loses": ["test_planar_log_det", "test_planar_reverse_kl", "test_fit_planar_flow"],
    },
    # Exercise 4: planar_reverse_kl
    {
        "name": "reverse-kl-wrong-sign",
        "cell": "planar_reverse_kl",
        "find": "return (log_q - log_target(z)).mean()",
        "replace": "return (log_target(z) - log_q).mean()",
        "loses": ["test_planar_reverse_kl", "test_fit_planar_flow"],
    },
    {
        "name": "reverse-kl-without-log-det",
        "cell": "planar_reverse_kl",
        "find": "log_q = log_q - planar_log_det(z, u_hat, w, b)",
        "replace": "log_q = log_q",
        "loses": ["test_planar_reverse_kl", "test_fit_planar_flow"],
    },
    {
        "name": "reverse-kl-log-det-added",
        "cell": "planar_reverse_kl",
        "find": "log_q = log_q - planar_log_det(z, u_hat, w, b)",
        "replace": "log_q = log_q + planar_log_det(z, u_hat, w, b)",
        "loses": ["test_planar_reverse_kl", "test_fit_planar_flow"],
    },
    {
        "name": "reverse-kl-raw-u-instead-of-u-hat",
        "cell": "planar_reverse_kl",
        "find": "u_hat = planar_u_hat(u, w)",
        "replace": "u_hat = u",
        "loses": ["test_planar_reverse_kl", "test_fit_planar_flow"],
    },
    {
        "name": "reverse-kl-log-det-after-the-map",
        "cell": "planar_reverse_kl",
        "find": "        log_q = log_q - planar_log_det(z, u_hat, w, b)\n        z = planar_map(z, u_hat, w, b)",
        "replace": "        z = planar_map(z, u_hat, w, b)\n        log_q = log_q - planar_log_det(z, u_hat, w, b)",
        "loses": ["test_planar_reverse_kl"],
    },
    # issue 19: right value, wrong gradient: the samples are detached between layers, so the
    # gradient misses the path through x (and through log_target), and training silently fails
    {
        "name": "reverse-kl-detached-samples",
        "cell": "planar_reverse_kl",
        "find": "z = planar_map(z, u_hat, w, b)",
        "replace": "z = planar_map(z, u_hat, w, b).detach()",
        "loses": ["test_planar_reverse_kl", "test_fit_planar_flow"],
    },
    {
        "name": "reverse-kl-sum-instead-of-mean",
        "cell": "planar_reverse_kl",
        "find": "return (log_q - log_target(z)).mean()",
        "replace": "return (log_q - log_target(z)).sum()",
        "loses": ["test_planar_reverse_kl"],
    },
    # Exercise 5: radial_flow (the transfer exercise)
    {
        # the determinant of (1 + beta h) I alone: the rank-one term forgotten
        "name": "radial-log-det-without-rank-one-term",
        "cell": "radial_flow",
        "find": "(D - 1) * torch.log1p(beta * h) + torch.log1p(beta * alpha * h**2)",
        "replace": "D * torch.log1p(beta * h)",
        "loses": ["test_radial_flow"],
    },
    {
        # the power D - 1 replaced by 1 (right only in two dimensions)
        "name": "radial-log-det-power-one",
        "cell": "radial_flow",
        "find": "(D - 1) * torch.log1p(beta * h)",
        "replace": "torch.log1p(beta * h)",
        "loses": ["test_radial_flow"],
    },
    {
        # h'(r) = -h^2 taken with the wrong sign
        "name": "radial-log-det-h-prime-sign",
        "cell": "radial_flow",
        "find": "torch.log1p(beta * alpha * h**2)",
        "replace": "torch.log1p(2 * beta * h - beta * alpha * h**2)",
        "loses": ["test_radial_flow"],
    },
    {
        "name": "radial-strict-inequality",
        "cell": "radial_flow",
        "find": "if not beta >= -alpha:",
        "replace": "if not beta > -alpha:",
        "loses": ["test_radial_flow"],
    },
    {
        "name": "radial-no-invertibility-check",
        "cell": "radial_flow",
        "find": "if not beta >= -alpha:",
        "replace": "if False:",
        "loses": ["test_radial_flow"],
    },
    {
        # the rank-one factor written with a division by r: NaN at z = z0
        "name": "radial-divides-by-r",
        "cell": "radial_flow",
        "find": "torch.log1p(beta * alpha * h**2)",
        "replace": "torch.log1p(beta * h - beta * h**2 * (diff**2).sum(dim=1) / r)",
        "loses": ["test_radial_flow"],
    },
    {
        # right values, no gradient in alpha and beta
        "name": "radial-detached-parameters",
        "cell": "radial_flow",
        "find": "    D = z.shape[1]\n",
        "replace": "    D = z.shape[1]\n    alpha, beta = float(alpha), float(beta)\n",
        "loses": ["test_radial_flow"],
    },
    # Exercise 6: radial_inverse_radius
    {
        "name": "radial-inverse-other-root",
        "cell": "radial_inverse_radius",
        "find": "torch.sqrt(c**2 + 4 * alpha * r_out) - c",
        "replace": "-torch.sqrt(c**2 + 4 * alpha * r_out) - c",
        "loses": ["test_radial_inverse_radius"],
    },
    {
        "name": "radial-inverse-sign-of-beta",
        "cell": "radial_inverse_radius",
        "find": "c = alpha + beta - r_out",
        "replace": "c = alpha - beta - r_out",
        "loses": ["test_radial_inverse_radius"],
    },
    {
        # a correct formula in another form: the root written without cancellation
        "name": "radial-inverse-correct-other-form",
        "cell": "radial_inverse_radius",
        "find": "return 0.5 * (torch.sqrt(c**2 + 4 * alpha * r_out) - c)",
        "replace": ("disc = torch.sqrt(c * c + 4 * alpha * r_out)\n"
                    "    big = torch.where(c < 0, 0.5 * (disc - c), 0.5 * (disc + c))\n"
                    "    other = torch.where(big > 0, alpha * r_out / big.clamp_min(1e-300), torch.zeros_like(big))\n"
                    "    return torch.where(c < 0, big, other)"),
        "loses": [],
    },
    {
        # "inverting" by dividing r' by the layer's scale evaluated at r' instead of at r
        "name": "radial-inverse-number-scale-at-r-out",
        "cell": "radial_inverse_radius",
        "find": "RADIAL_INVERSE_RADIUS_AT_3 = math.sqrt(3.0)",
        "replace": "RADIAL_INVERSE_RADIUS_AT_3 = 3 / (1 + 2 / (1 + 3))",
        "loses": ["test_radial_inverse_radius"],
    },
    # Exercise 7: fit_planar_flow (a model that trains but misses the threshold)
    {
        # K layers returned, but only the last one is trained: in effect a single layer
        "name": "fit-only-last-layer-trained",
        "cell": "fit_planar_flow",
        "find": "torch.optim.Adam([t for layer in params for t in layer], lr=lr)",
        "replace": "torch.optim.Adam(list(params[-1]), lr=lr)",
        "loses": ["test_fit_planar_flow"],
    },
    {
        # a twentieth of the step budget: trains, but stops short
        "name": "fit-too-few-steps",
        "cell": "fit_planar_flow",
        "find": "    for _ in range(steps):\n",
        "replace": "    for _ in range(steps // 20):\n",
        "loses": ["test_fit_planar_flow"],
    },
]
