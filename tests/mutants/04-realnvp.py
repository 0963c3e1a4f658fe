"""Wrong implementations of assignment 04-realnvp: see tests/mutants/__init__.py."""

# The squeeze solution cell between squeeze's permute and unsqueeze's permute: mutants that
# change the layout consistently in both functions edit this whole span.
_SQUEEZE_TO_UNSQUEEZE = (
    ".reshape(B, 4 * C, H // 2, W // 2)\n    ### END SOLUTION\n\n\ndef unsqueeze(z):\n"
    '    """(B, 4C, h, w) -> (B, C, 2h, 2w), the inverse of squeeze."""\n    ### BEGIN SOLUTION\n'
    "    if z.dim() != 4 or z.shape[1] % 4:\n"
    '        raise ValueError(f"unsqueeze: expected (B, 4C, h, w), got {tuple(z.shape)}")\n'
    "    B, C4, h, w = z.shape\n    return z.reshape(B, C4 // 4, 2, 2, h, w)"
)

MUTANTS = [
    # Exercise 1: coupling_forward
    {
        "name": "forward-ladj-summed-over-all-entries",
        "cell": "coupling_forward",
        "find": "ladj = -((1 - b) * s).reshape(x.shape[0], -1).sum(dim=1)",
        "replace": "ladj = -s.reshape(x.shape[0], -1).sum(dim=1)",
        "loses": ["test_coupling_forward", "test_fit_realnvp"],
    },
    {
        "name": "forward-exp-s-instead-of-exp-minus-s",
        "cell": "coupling_forward",
        "find": "(x - t) * torch.exp(-s)",
        "replace": "(x - t) * torch.exp(s)",
        "loses": ["test_coupling_forward", "test_fit_realnvp"],
    },
    {
        "name": "forward-conditioner-reads-unmasked-input",
        "cell": "coupling_forward",
        "find": "conditioner(b * x)",
        "replace": "conditioner(x)",
        "loses": ["test_coupling_forward", "test_fit_realnvp"],
    },
    {
        # issue 19, gradients: z and ladj have the right values, but no gradient flows through
        # the log-scale (training with it would silently fail); caught by the Jacobian and the
        # gradient of sum(ladj) against the reference's autograd
        "name": "forward-log-scale-detached",
        "cell": "coupling_forward",
        "find": "t, s = conditioner(b * x).chunk(2, dim=1)",
        "replace": "t, s = conditioner(b * x).chunk(2, dim=1)\n    s = s.detach()",
        "loses": ["test_coupling_forward", "test_fit_realnvp"],
    },
    # Exercise 2: coupling_inverse
    {
        "name": "inverse-exp-minus-s-direction-error",
        "cell": "coupling_inverse",
        "find": "z * torch.exp(s) + t",
        "replace": "z * torch.exp(-s) + t",
        "loses": ["test_coupling_inverse"],
    },
    {
        "name": "inverse-ladj-with-forward-sign",
        "cell": "coupling_inverse",
        "find": "ladj = ((1 - b) * s)",
        "replace": "ladj = -((1 - b) * s)",
        "loses": ["test_coupling_inverse"],
    },
    {
        "name": "inverse-shift-before-scale",
        "cell": "coupling_inverse",
        "find": "z * torch.exp(s) + t",
        "replace": "(z + t) * torch.exp(s)",
        "loses": ["test_coupling_inverse"],
    },
    {
        # issue 19, gradients: right values, the shift detached: the Jacobian of x differs
        # from the reference's off the diagonal (the log-det alone cannot see it)
        "name": "inverse-shift-detached",
        "cell": "coupling_inverse",
        "find": "t, s = conditioner(b * z).chunk(2, dim=1)",
        "replace": "t, s = conditioner(b * z).chunk(2, dim=1)\n    t = t.detach()",
        "loses": ["test_coupling_inverse"],
    },
    # Exercise 3: checkerboard
    {
        "name": "checkerboard-parity-flipped",
        "cell": "checkerboard",
        "find": "((i + j) % 2 == parity)",
        "replace": "((i + j) % 2 != parity)",
        "loses": ["test_checkerboard"],
    },
    {
        "name": "checkerboard-stripes-instead-of-squares",
        "cell": "checkerboard",
        "find": "((i + j) % 2 == parity)",
        "replace": "((j + 0 * i) % 2 == parity)",
        "loses": ["test_checkerboard"],
    },
    {
        "name": "checkerboard-no-parity-check",
        "cell": "checkerboard",
        "find": "if parity not in (0, 1):",
        "replace": "if False:",
        "loses": ["test_checkerboard"],
    },
    # Exercise 4: squeeze / unsqueeze
    {
        # a consistent pair with another layout (channel 4c + 2dj + di): the round trip is
        # exact and the flow would be valid, but it is not flowlib's layout
        "name": "squeeze-transposed-layout-round-trip-ok",
        "cell": "squeeze",
        "find": ".permute(0, 1, 3, 5, 2, 4)" + _SQUEEZE_TO_UNSQUEEZE + ".permute(0, 1, 4, 2, 5, 3)",
        "replace": ".permute(0, 1, 5, 3, 2, 4)" + _SQUEEZE_TO_UNSQUEEZE + ".permute(0, 1, 4, 3, 5, 2)",
        "loses": ["test_squeeze_layout"],
    },
    {
        "name": "squeeze-plain-reshape",
        # plain reshapes both ways: an exact round trip, but no 2x2 blocks are gathered
        "cell": "squeeze",
        "find": ".permute(0, 1, 3, 5, 2, 4)" + _SQUEEZE_TO_UNSQUEEZE + ".permute(0, 1, 4, 2, 5, 3)",
        "replace": _SQUEEZE_TO_UNSQUEEZE,
        "loses": ["test_squeeze_layout"],
    },
    {
        "name": "unsqueeze-not-the-inverse",
        "cell": "squeeze",
        "find": "permute(0, 1, 4, 2, 5, 3)",
        "replace": "permute(0, 1, 4, 3, 5, 2)",
        "loses": ["test_squeeze_round_trip", "test_squeeze_layout"],
    },
    {
        "name": "squeeze-accepts-odd-sizes",
        "cell": "squeeze",
        "find": "if x.dim() != 4 or x.shape[2] % 2 or x.shape[3] % 2:",
        "replace": "if x.dim() != 4:",
        "loses": ["test_squeeze_round_trip"],
    },
    # Exercise 5: multiscale_log_prob
    {
        "name": "multiscale-factored-out-part-not-counted",
        "cell": "multiscale_log_prob",
        "find": "            total = total + log_normal(h_out)\n",
        "replace": "",
        "loses": ["test_multiscale_log_prob"],
    },
    {
        "name": "multiscale-factors-out-the-second-half",
        "cell": "multiscale_log_prob",
        "find": "h_out, h = h.chunk(2, dim=1)",
        "replace": "h, h_out = h.chunk(2, dim=1)",
        "loses": ["test_multiscale_log_prob"],
    },
    {
        "name": "multiscale-only-last-log-det",
        "cell": "multiscale_log_prob",
        "find": "total = total + ladj",
        "replace": "total = total + (ladj if k == len(transforms) - 1 else 0)",
        "loses": ["test_multiscale_log_prob"],
    },
    # Exercise 6 (issue 13, transfer): the sinh-arcsinh coupling
    {
        "name": "sas-forward-log-det-without-asinh-slope",
        "cell": "sas_coupling",
        "find": "- math.log(2.0) - 0.5 * torch.log1p(x**2)",
        "replace": "- math.log(2.0)",
        "loses": ["test_sas_coupling"],
    },
    {
        "name": "sas-inverse-scales-after-the-shift",
        "cell": "sas_coupling",
        "find": "v = (torch.asinh(z) + t) * torch.exp(-s)",
        "replace": "v = torch.asinh(z) * torch.exp(-s) + t",
        "loses": ["test_sas_coupling"],
    },
    {
        "name": "sas-forward-log-det-over-all-entries",
        "cell": "sas_coupling",
        "find": "return z, ((1 - b) * log_slope).sum(dim=1)",
        "replace": "return z, log_slope.sum(dim=1)",
        "loses": ["test_sas_coupling"],
    },
    {
        "name": "sas-no-check-of-the-conditioner-output",
        "cell": "sas_coupling",
        "find": "if tuple(out.shape) != (x.shape[0], 2 * x.shape[1]):",
        "replace": "if False:",
        # chunk(2) of a (7, 6) output runs and gives 3 columns each: broadcasting fails or not
        "loses": ["test_sas_coupling"],
    },
    {
        # a correct solution in another style (log cosh directly, no stable form): full marks
        "name": "sas-plain-log-cosh-correct",
        "cell": "sas_coupling",
        "find": "log_slope = s + u.abs() + torch.log1p(torch.exp(-2 * u.abs())) - math.log(2.0) - 0.5 * torch.log1p(x**2)",
        "replace": "log_slope = s + torch.log(torch.cosh(u)) - 0.5 * torch.log(1 + x * x)",
        "loses": [],
    },
    # Exercise 7 (issue 13, training graded by outcome): fit_realnvp
    {
        "name": "fit-realnvp-same-mask-in-every-layer",
        "cell": "fit_realnvp",
        "find": "kept = [(layer % 2 if alternate else 0) for layer in range(n_layers)]",
        "replace": "kept = [0 for layer in range(n_layers)]",
        # trains, but x_1 passes to the base untouched: NLL about 1.65 nats
        "loses": ["test_fit_realnvp"],
    },
    {
        "name": "fit-realnvp-log-det-sign",
        "cell": "fit_realnvp",
        "find": "total = total + ladj",
        "replace": "total = total - ladj",
        "loses": ["test_fit_realnvp"],
    },
    {
        "name": "fit-realnvp-tenth-of-the-steps",
        "cell": "fit_realnvp",
        "find": "for _ in range(steps):",
        "replace": "for _ in range(steps // 10):",
        "loses": ["test_fit_realnvp"],
    },
    # Exercise 8 (issue 13, derivation): SAME_MASK_EXCESS_NLL
    {
        "name": "same-mask-kl-the-wrong-way-round",
        "cell": "same_mask_excess",
        "find": "SAME_MASK_EXCESS_NLL = (0.25 + 4.0 - 1.0) / 2 - math.log(0.5)",
        "replace": "SAME_MASK_EXCESS_NLL = (1.0 + 4.0) / (2 * 0.25) - 0.5 + math.log(0.5)",
        # KL(N(0, 1) || N(2, 0.5^2))
        "loses": ["test_same_mask_excess"],
    },
]
