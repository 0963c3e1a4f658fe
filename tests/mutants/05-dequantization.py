"""Wrong implementations of assignment 05-dequantization: see tests/mutants/__init__.py."""

MUTANTS = [
    # Exercise 1: dequantize
    {
        "name": "dequantize-forgets-to-divide-by-n-bins",
        "cell": "dequantize",
        "find": "return (x.to(dtype) + u) / n_bins",
        "replace": "return x.to(dtype) + u",
        "loses": ["test_dequantize", "test_dequantized_log_likelihood", "test_dequantized_bits_per_dim"],
    },
    {
        "name": "dequantize-divides-only-x",
        "cell": "dequantize",
        "find": "return (x.to(dtype) + u) / n_bins",
        "replace": "return x.to(dtype) / n_bins + u",
        "loses": ["test_dequantize", "test_dequantized_log_likelihood", "test_dequantized_bits_per_dim"],
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
        "loses": ["test_logit_values", "test_logit_log_det_autograd"],
    },
    {
        "name": "logit-log-det-wrong-sign",
        "cell": "logit_transform",
        "find": "ladj = math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)",
        "replace": "ladj = -(math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s))",
        "loses": ["test_logit_values", "test_logit_log_det_autograd"],
    },
    {
        "name": "logit-log-det-not-summed-per-sample",
        "cell": "logit_transform",
        "find": "return z, ladj.reshape(y.shape[0], -1).sum(dim=1)",
        "replace": "return z, ladj",
        "loses": ["test_logit_values", "test_logit_log_det_autograd"],
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
]
