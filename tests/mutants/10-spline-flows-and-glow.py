"""Wrong implementations of assignment 10-spline-flows-and-glow: see tests/mutants/__init__.py."""

# train_spline_flow's coupling layers call rq_spline, so a forward-spline mistake that changes
# the density also loses the training cell (the grader's KL bound or its mass check).
WITH_TRAINING = ["test_rq_spline", "test_train_spline_flow"]

MUTANTS = [
    # Exercise 1: rq_spline
    {
        "name": "rq-derivative-knots-swapped",
        "cell": "rq_spline",
        "find": "log_d = 2 * torch.log(s) + torch.log(d1 * xi**2 + 2 * s * mix + d0 * (1 - xi) ** 2) - 2 * torch.log(den)\n    return torch.where(inside, y, x)",
        "replace": "log_d = 2 * torch.log(s) + torch.log(d0 * xi**2 + 2 * s * mix + d1 * (1 - xi) ** 2) - 2 * torch.log(den)\n    return torch.where(inside, y, x)",
        "loses": WITH_TRAINING,
    },
    {
        "name": "rq-log-det-missing-square-of-s",
        "cell": "rq_spline",
        "find": "log_d = 2 * torch.log(s) + torch.log(d1 * xi**2 + 2 * s * mix + d0 * (1 - xi) ** 2) - 2 * torch.log(den)\n    return torch.where(inside, y, x)",
        "replace": "log_d = torch.log(s) + torch.log(d1 * xi**2 + 2 * s * mix + d0 * (1 - xi) ** 2) - 2 * torch.log(den)\n    return torch.where(inside, y, x)",
        "loses": WITH_TRAINING,
    },
    {
        # the tails get the formula of the first bin extrapolated instead of the identity
        "name": "rq-no-identity-tails",
        "cell": "rq_spline",
        "find": "    return torch.where(inside, y, x), torch.where(inside, log_d, torch.zeros_like(log_d))\n    ### END SOLUTION",
        "replace": "    return y, log_d\n    ### END SOLUTION",
        # the training data stay inside [-4, 4], so the fit does not notice
        "loses": ["test_rq_spline"],
    },
    {
        # the last knot x_K falls out of the last bin (searchsorted's index K, not clamped): at x = B it is NaN or wrong
        "name": "rq-bin-index-not-clamped",
        "cell": "rq_spline",
        "find": "    return k.clamp(0, K - 1)",
        "replace": "    return k.clamp(0, K)",
        # _bin is shared by the inverse, and the training's spline meets x = B too
        "loses": ["test_rq_spline", "test_rq_spline_inverse", "test_train_spline_flow"],
    },
    {
        "name": "rq-accepts-mismatched-knots",
        "cell": "rq_spline",
        "find": "    if knot_y.shape != knot_x.shape or derivs.shape != knot_x.shape:",
        "replace": "    if False:",
        # _check_knots is shared by the inverse
        "loses": ["test_rq_spline", "test_rq_spline_inverse"],
    },
    {
        # the knots' gradients are cut: the values are right, training gets no signal into the knots
        "name": "rq-knots-detached",
        "cell": "rq_spline",
        "find": "    x0, x1, y0, y1, d0, d1 = _bin_values(_bin(xs, knot_x), knot_x, knot_y, derivs)\n    w, h = x1 - x0, y1 - y0\n    s = h / w\n    xi = (xs - x0) / w",
        "replace": "    x0, x1, y0, y1, d0, d1 = _bin_values(_bin(xs, knot_x), knot_x.detach(), knot_y.detach(), derivs.detach())\n    w, h = x1 - x0, y1 - y0\n    s = h / w\n    xi = (xs - x0) / w",
        "loses": WITH_TRAINING,
    },
    # Exercise 2: rq_spline_inverse
    {
        "name": "inverse-textbook-root",
        "cell": "rq_spline_inverse",
        "find": "xi = (2 * c / (-b - disc.sqrt())).clamp(0, 1)",
        "replace": "xi = ((-b + disc.sqrt()) / (2 * a)).clamp(0, 1)",
        "loses": ["test_rq_spline_inverse"],
    },
    {
        "name": "inverse-bin-found-in-knot-x",
        "cell": "rq_spline_inverse",
        "find": "_bin(ys, knot_y)",
        "replace": "_bin(ys, knot_x)",
        "loses": ["test_rq_spline_inverse"],
    },
    {
        "name": "inverse-log-det-sign",
        "cell": "rq_spline_inverse",
        "find": "torch.where(inside, -log_d, torch.zeros_like(log_d))",
        "replace": "torch.where(inside, log_d, torch.zeros_like(log_d))",
        "loses": ["test_rq_spline_inverse"],
    },
    {
        "name": "inverse-tails-not-identity",
        "cell": "rq_spline_inverse",
        "find": "return torch.where(inside, x0 + xi * w, y),",
        "replace": "return x0 + xi * w,",
        "loses": ["test_rq_spline_inverse"],
    },
    # Exercise 3: glow_step_forward
    {
        "name": "glow-actnorm-log-det-without-hw",
        "cell": "glow_step_forward",
        "find": "ladj = -H * W * log_scale.sum()",
        "replace": "ladj = -log_scale.sum()",
        "loses": ["test_glow_step_forward"],
    },
    {
        "name": "glow-conv-log-det-sign",
        "cell": "glow_step_forward",
        "find": "ladj = ladj + H * W * log_s.sum()",
        "replace": "ladj = ladj - H * W * log_s.sum()",
        "loses": ["test_glow_step_forward"],
    },
    {
        # the full random matrices used as L and U: W's determinant is no longer prod(s)
        "name": "glow-lu-triangles-not-masked",
        "cell": "glow_step_forward",
        "find": "(torch.tril(lower, -1) + eye) @ (torch.triu(upper, 1) + torch.diag(sign_s * torch.exp(log_s)))",
        "replace": "(lower + eye) @ (upper + torch.diag(sign_s * torch.exp(log_s)))",
        "loses": ["test_glow_step_forward"],
    },
    {
        "name": "glow-permutation-ignored",
        "cell": "glow_step_forward",
        "find": "weight = P @ (",
        "replace": "weight = (",
        "loses": ["test_glow_step_forward"],
    },
    {
        "name": "glow-coupling-log-det-plus",
        "cell": "glow_step_forward",
        "find": "return z, ladj - a.sum(dim=(1, 2, 3))",
        "replace": "return z, ladj + a.sum(dim=(1, 2, 3))",
        "loses": ["test_glow_step_forward"],
    },
    # Exercise 4 (transfer): pq_cdf
    {
        "name": "pq-heights-not-normalised",
        "cell": "pq_cdf",
        "find": "v = heights / mass.sum()",
        "replace": "v = heights",
        "loses": ["test_pq_cdf"],
    },
    {
        # the density of the left edge held across the bin: a piecewise-linear CDF, not the quadratic
        "name": "pq-missing-quadratic-term",
        "cell": "pq_cdf",
        "find": "y = cdf[k] + widths[k] * (alpha * v[k] + 0.5 * alpha**2 * slope)",
        "replace": "y = cdf[k] + widths[k] * alpha * 0.5 * (v[k] + v[k + 1])",
        "loses": ["test_pq_cdf"],
    },
    {
        "name": "pq-accepts-x-outside",
        "cell": "pq_cdf",
        "find": "    if ((x < 0) | (x > 1)).any():",
        "replace": "    if False:",
        "loses": ["test_pq_cdf"],
    },
    # Exercise 5 (training, graded by outcome)
    {
        # the named weaker model's budget problem: 40 steps whatever n_steps says
        "name": "train-stops-after-40-steps",
        "cell": "train_spline_flow",
        "find": "for _ in range(n_steps):",
        "replace": "for _ in range(min(n_steps, 40)):",
        "loses": ["test_train_spline_flow"],
    },
    {
        # a single coupling layer: x_1's marginal stays the base's N(0, 1)
        "name": "train-one-layer",
        "cell": "train_spline_flow",
        "find": "layers = [RQCoupling2D(i % 2) for i in range(4)]",
        "replace": "layers = [RQCoupling2D(0)]",
        "loses": ["test_train_spline_flow"],
    },
    {
        # the log-determinant dropped from the layer: log_prob is no density (the grader's mass check)
        "name": "train-layer-drops-log-det",
        "cell": "train_spline_flow",
        "find": "return torch.cat(cols, dim=1), log_d",
        "replace": "return torch.cat(cols, dim=1), torch.zeros_like(log_d)",
        "loses": ["test_train_spline_flow"],
    },
    # Exercise 6 (derivation)
    {
        "name": "derivation-forgot-the-square",
        "cell": "rq_midpoint_derivative",
        "find": "return 4 * s**2 / (d_left + d_right + 2 * s)",
        "replace": "return 4 * s / (d_left + d_right + 2 * s)",
        "loses": ["test_rq_midpoint_derivative"],
    },
    {
        "name": "derivation-arithmetic-mean",
        "cell": "rq_midpoint_derivative",
        "find": "return 4 * s**2 / (d_left + d_right + 2 * s)",
        "replace": "return (d_left + d_right + 2 * s) / 4",
        "loses": ["test_rq_midpoint_derivative"],
    },
    # correct solutions written another way must pass every hidden test
    {
        "name": "correct-midpoint-as-harmonic-form",
        "cell": "rq_midpoint_derivative",
        "find": "return 4 * s**2 / (d_left + d_right + 2 * s)",
        "replace": "return s / (0.5 + (d_left + d_right) / (4 * s))",
        "loses": [],
    },
    {
        "name": "correct-inverse-log-det-from-xi",
        "cell": "rq_spline_inverse",
        "find": "return torch.where(inside, x0 + xi * w, y), torch.where(inside, -log_d, torch.zeros_like(log_d))",
        "replace": "log_d = torch.log(d1 * xi**2 + 2 * s * mix + d0 * (1 - xi) ** 2) - 2 * torch.log(den / s)\n    return torch.where(inside, x0 + xi * w, y), torch.where(inside, -log_d, torch.zeros_like(log_d))",
        "loses": [],
    },
]
