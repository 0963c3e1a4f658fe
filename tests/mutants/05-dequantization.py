"""Wrong implementations of assignment 05-dequantization: see tests/mutants/__init__.py."""

MUTANTS = [
    # Exercise 1: dequantize
    {
        "name": "dequantize-forgets-to-divide-by-n-bins",
        "cell": "dequantize",
        "find": "return (x.to(dtype) + u) / n_bins",
        "replace": "return x.to(dtype) + u",
        # the logit transform of the training exercise refuses y outside [0, 1]
        "loses": ["test_dequantize", "test_dequantized_log_likelihood", "test_dequantized_bits_per_dim",
                  "test_fit_discrete_flow"],
    },
    {
        "name": "dequantize-divides-only-x",
        "cell": "dequantize",
        "find": "return (x.to(dtype) + u) / n_bins",
        "replace": "return x.to(dtype) / n_bins + u",
        # the logit transform of the training exercise refuses y outside [0, 1]
        "loses": ["test_dequantize", "test_dequantized_log_likelihood", "test_dequantized_bits_per_dim",
                  "test_fit_discrete_flow"],
    },
    {
        "name": "dequantize-accepts-float-input",
        "cell": "dequantize",
        "find": "if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:",
        "replace": "if x.is_complex() or x.dtype == torch.bool:",
        "loses": ["test_dequantize"],
    },
    {
        "name": "dequantize-noise-on-x-device-ignoring-generator",
        "cell": "dequantize",
        "find": "u = torch.rand(x.shape, generator=generator, dtype=dtype).to(x.device)",
        "replace": "u = torch.rand(x.shape, dtype=dtype, device=x.device)",
        "loses": ["test_dequantize", "test_dequantized_log_likelihood", "test_dequantized_bits_per_dim"],
    },
    {
        # issue 19, raises: the spec also rejects bool tensors (True/False pass the range check)
        "name": "dequantize-accepts-bool-input",
        "cell": "dequantize",
        "find": "if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:",
        "replace": "if x.is_floating_point() or x.is_complex():",
        "loses": ["test_dequantize"],
    },
    # Exercise 2: logit_transform
    {
        "name": "logit-log-det-missing-1-minus-2-alpha",
        "cell": "logit_transform",
        "find": "ladj = math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)",
        "replace": "ladj = - torch.log(s) - torch.log1p(-s)",
        "loses": ["test_logit_values", "test_logit_log_det_autograd"],
    },
    {
        "name": "logit-log-det-forgotten",
        "cell": "logit_transform",
        "find": "return z, ladj.reshape(y.shape[0], -1).sum(dim=1)",
        "replace": "return z, torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)",
        # the training exercise's model is then no density on the square
        "loses": ["test_logit_values", "test_logit_log_det_autograd", "test_fit_discrete_flow"],
    },
    {
        "name": "logit-log-det-wrong-sign",
        "cell": "logit_transform",
        "find": "ladj = math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)",
        "replace": "ladj = -(math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s))",
        # the training exercise's model is then no density on the square
        "loses": ["test_logit_values", "test_logit_log_det_autograd", "test_fit_discrete_flow"],
    },
    {
        "name": "logit-log-det-not-summed-per-sample",
        "cell": "logit_transform",
        "find": "return z, ladj.reshape(y.shape[0], -1).sum(dim=1)",
        "replace": "return z, ladj",
        # the training exercise's log_prob cannot add a (batch, 2) log-det
        "loses": ["test_logit_values", "test_logit_log_det_autograd", "test_fit_discrete_flow"],
    },
    {
        "name": "logit-accepts-raw-pixels",
        "cell": "logit_transform",
        "find": "if y.numel() and (y.min() < 0 or y.max() > 1):",
        "replace": "if False:",
        "loses": ["test_logit_values"],
    },
    {
        # issue 19, raises: alpha must lie in [0, 0.5); a negative alpha is accepted here
        "name": "logit-accepts-negative-alpha",
        "cell": "logit_transform",
        "find": "if not 0 <= alpha < 0.5:",
        "replace": "if not alpha < 0.5:",
        "loses": ["test_logit_values"],
    },
    {
        # issue 19, gradients: the right log-det values, but detached from y (it enters the
        # training loss through the flow's log_prob)
        "name": "logit-log-det-detached",
        "cell": "logit_transform",
        "find": "return z, ladj.reshape(y.shape[0], -1).sum(dim=1)",
        "replace": "return z, ladj.detach().reshape(y.shape[0], -1).sum(dim=1)",
        "loses": ["test_logit_log_det_autograd"],
    },
    # Exercise 3: bits_per_dim
    {
        "name": "bpd-missing-log-n-bins-offset",
        "cell": "bits_per_dim",
        "find": "return (-logp / D + math.log(n_bins)) / math.log(2)",
        "replace": "return (-logp / D) / math.log(2)",
        "loses": ["test_bits_per_dim"],
    },
    {
        "name": "bpd-natural-log-instead-of-log2",
        "cell": "bits_per_dim",
        "find": "return (-logp / D + math.log(n_bins)) / math.log(2)",
        "replace": "return -logp / D + math.log(n_bins)",
        "loses": ["test_bits_per_dim", "test_dequantized_bits_per_dim"],
    },
    {
        "name": "bpd-divides-by-channels-not-dimensions",
        "cell": "bits_per_dim",
        "find": "D = math.prod(event_shape)",
        "replace": "D = event_shape[0]",
        "loses": ["test_bits_per_dim", "test_dequantized_bits_per_dim"],
    },
    {
        "name": "bpd-offset-divided-by-d-too",
        "cell": "bits_per_dim",
        "find": "return (-logp / D + math.log(n_bins)) / math.log(2)",
        "replace": "return (-logp + math.log(n_bins)) / D / math.log(2)",
        "loses": ["test_bits_per_dim"],
    },
    # Exercise 4: dequantized_log_likelihood
    {
        "name": "ll-missing-log-n-bins-offset",
        "cell": "dequantized_log_likelihood",
        "find": "return total / n_samples - D * math.log(n_bins)",
        "replace": "return total / n_samples",
        "loses": ["test_dequantized_log_likelihood", "test_dequantized_bits_per_dim"],
    },
    {
        "name": "ll-offset-not-times-d",
        "cell": "dequantized_log_likelihood",
        "find": "return total / n_samples - D * math.log(n_bins)",
        "replace": "return total / n_samples - math.log(n_bins)",
        "loses": ["test_dequantized_log_likelihood", "test_dequantized_bits_per_dim"],
    },
    {
        "name": "ll-offset-with-wrong-sign",
        "cell": "dequantized_log_likelihood",
        "find": "return total / n_samples - D * math.log(n_bins)",
        "replace": "return total / n_samples + D * math.log(n_bins)",
        "loses": ["test_dequantized_log_likelihood", "test_dequantized_bits_per_dim"],
    },
    {
        "name": "ll-sums-instead-of-averaging-draws",
        "cell": "dequantized_log_likelihood",
        "find": "return total / n_samples - D * math.log(n_bins)",
        "replace": "return total - D * math.log(n_bins)",
        "loses": ["test_dequantized_log_likelihood", "test_dequantized_bits_per_dim"],
    },
    # Exercise 5: dequantized_bits_per_dim
    {
        "name": "dbpd-offset-counted-twice",
        "cell": "dequantized_bits_per_dim",
        "find": "return bits_per_dim(ll, x.shape[1:], n_bins=1)",
        "replace": "return bits_per_dim(ll, x.shape[1:], n_bins)",
        "loses": ["test_dequantized_bits_per_dim"],
    },
    {
        "name": "dbpd-divides-by-batch-times-dimensions",
        "cell": "dequantized_bits_per_dim",
        "find": "return bits_per_dim(ll, x.shape[1:], n_bins=1)",
        "replace": "return bits_per_dim(ll, x.shape, n_bins=1)",
        "loses": ["test_dequantized_bits_per_dim"],
    },
    {
        "name": "dbpd-natural-log",
        "cell": "dequantized_bits_per_dim",
        "find": "return bits_per_dim(ll, x.shape[1:], n_bins=1)",
        "replace": "return -ll / x[0].numel()",
        "loses": ["test_dequantized_bits_per_dim"],
    },
    # Exercise 6 (transfer): tilted_dequantized_log_likelihood
    {
        # issue 19, extremes: exp(t) - 1 and log(1 + .) lose the digits of a tiny tilt (1e-7)
        "name": "tilted-naive-exp-minus-one",
        "cell": "tilted_dequantized_log_likelihood",
        "find": "u = torch.where(zero, e, torch.log1p(e * torch.expm1(t)) / t)",
        "replace": "u = torch.where(zero, e, torch.log(1 + e * (torch.exp(t) - 1)) / t)",
        "loses": ["test_tilted_dequantized_log_likelihood"],
    },
    {
        "name": "tilted-adds-log-q",
        "cell": "tilted_dequantized_log_likelihood",
        "find": "return log_density(y) - log_q.sum(dim=1) - D * math.log(n_bins)",
        "replace": "return log_density(y) + log_q.sum(dim=1) - D * math.log(n_bins)",
        "loses": ["test_tilted_dequantized_log_likelihood"],
    },
    {
        "name": "tilted-log-q-without-the-normaliser",
        "cell": "tilted_dequantized_log_likelihood",
        "find": "t * u - torch.log(torch.expm1(t) / t)",
        "replace": "t * u",
        "loses": ["test_tilted_dequantized_log_likelihood"],
    },
    {
        # issue 19, gradients: the right value, but log q detached from the tilt
        "name": "tilted-log-q-detached",
        "cell": "tilted_dequantized_log_likelihood",
        "find": "return log_density(y) - log_q.sum(dim=1) - D * math.log(n_bins)",
        "replace": "return log_density(y) - log_q.detach().sum(dim=1) - D * math.log(n_bins)",
        "loses": ["test_tilted_dequantized_log_likelihood"],
    },
    {
        # issue 19, extremes: t = 0 without its own branch is 0 / 0
        "name": "tilted-nan-at-zero-tilt",
        "cell": "tilted_dequantized_log_likelihood",
        "find": "zero = tilt == 0",
        "replace": "zero = torch.zeros_like(tilt, dtype=torch.bool)",
        "loses": ["test_tilted_dequantized_log_likelihood"],
    },
    {
        # issue 19, raises: a tilt of another shape is not refused with ValueError
        "name": "tilted-accepts-a-tilt-of-another-shape",
        "cell": "tilted_dequantized_log_likelihood",
        "find": "if tilt.shape != x.shape:",
        "replace": "if False:",
        "loses": ["test_tilted_dequantized_log_likelihood"],
    },
    {
        # issue 19, dtypes: the noise in torch's default dtype, whatever tilt's dtype
        "name": "tilted-noise-in-default-dtype",
        "cell": "tilted_dequantized_log_likelihood",
        "find": "e = torch.rand(x.shape, generator=generator, dtype=tilt.dtype).to(tilt.device)",
        "replace": "e = torch.rand(x.shape, generator=generator).to(tilt.device)",
        "loses": ["test_tilted_dequantized_log_likelihood"],
    },
    # Exercise 7 (derivation): exponential_gap
    {
        "name": "gap-in-lambda-not-lambda-over-n",
        "cell": "exponential_gap",
        "find": "h = lam / n_bins\n    return",
        "replace": "h = lam\n    return",
        "loses": ["test_exponential_gap"],
    },
    {
        "name": "gap-without-the-mean-offset",
        "cell": "exponential_gap",
        "find": "return math.log(-math.expm1(-h)) - math.log(h) + h / 2",
        "replace": "return abs(math.log(-math.expm1(-h)) - math.log(h))",
        "loses": ["test_exponential_gap"],
    },
    # Exercise 8 (training): fit_discrete_flow
    {
        # trains, but 5 steps leave it near its initialisation (20 steps would already pass)
        "name": "fit-five-steps",
        "cell": "fit_discrete_flow",
        "find": "for _ in range(n_steps):",
        "replace": "for _ in range(n_steps // 100):",
        "loses": ["test_fit_discrete_flow"],
    },
    {
        # a factorised model: one learned Gaussian per logit coordinate, no coupling
        "name": "fit-factorised-model",
        "cell": "fit_discrete_flow",
        "find": "self.flow = flowlib.realnvp(2, n_layers=4, hidden=(32, 32))",
        "replace": ("self.flow = flowlib.Flow(flowlib.StandardNormal(2), "
                    "flowlib.flows.onedim.Affine(torch.zeros(2), torch.ones(2), shape=(2,)))"),
        "loses": ["test_fit_discrete_flow"],
    },
    # correct solutions in another style: they must keep every point
    {
        "name": "correct-tilted-log-q-as-log-t-over-expm1",
        "cell": "tilted_dequantized_log_likelihood",
        "find": "t * u - torch.log(torch.expm1(t) / t)",
        "replace": "torch.log(t / torch.expm1(t)) + t * u",
        "loses": [],
    },
    {
        "name": "correct-gap-as-log-sinh",
        "cell": "exponential_gap",
        "find": "return math.log(-math.expm1(-h)) - math.log(h) + h / 2",
        "replace": "return math.log(math.sinh(h / 2) / (h / 2))",
        "loses": [],
    },
]
