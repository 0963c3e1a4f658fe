"""Wrong implementations of assignment 02-planar-flows: see tests/mutants/__init__.py."""

MUTANTS = [
    # Exercise 1: planar_u_hat
    {
        "name": "u-hat-returns-u",
        "cell": "planar_u_hat",
        "find": "return u + (m - wu) * w / torch.dot(w, w)",
        "replace": "return u",
        # the unconstrained u is also what the reverse KL then uses
        "loses": ["test_planar_u_hat", "test_planar_reverse_kl"],
    },
    {
        "name": "u-hat-norm-instead-of-squared-norm",
        "cell": "planar_u_hat",
        "find": "w / torch.dot(w, w)",
        "replace": "w / torch.linalg.vector_norm(w)",
        "loses": ["test_planar_u_hat", "test_planar_reverse_kl"],
    },
    {
        "name": "u-hat-without-minus-one",
        "cell": "planar_u_hat",
        "find": "m = -1.0 + F.softplus(wu)",
        "replace": "m = F.softplus(wu)",
        "loses": ["test_planar_u_hat", "test_planar_reverse_kl"],
    },
    # issue 19: a value that is right with a gradient that is wrong (an intermediate detached);
    # the reverse KL's gradient, checked against the reference's, inherits it
    {
        "name": "u-hat-detached-norm",
        "cell": "planar_u_hat",
        "find": "w / torch.dot(w, w)",
        "replace": "w / torch.dot(w, w).detach()",
        "loses": ["test_planar_u_hat", "test_planar_reverse_kl"],
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
        "loses": ["test_planar_map", "test_planar_reverse_kl"],
    },
    {
        "name": "map-sigmoid-instead-of-tanh",
        "cell": "planar_map",
        "find": "torch.tanh(a)",
        "replace": "torch.sigmoid(a)",
        "loses": ["test_planar_map", "test_planar_reverse_kl"],
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
        "loses": ["test_planar_log_det", "test_planar_reverse_kl"],
    },
    {
        "name": "log-det-derivative-not-squared",
        "cell": "planar_log_det",
        "find": "h_prime = 1.0 - h**2",
        "replace": "h_prime = 1.0 - h",
        "loses": ["test_planar_log_det", "test_planar_reverse_kl"],
    },
    # issue 19: right value, wrong gradient (h' treated as a constant)
    {
        "name": "log-det-detached-tanh",
        "cell": "planar_log_det",
        "find": "h = torch.tanh(z @ w + b)",
        "replace": "h = torch.tanh(z @ w + b).detach()",
        "loses": ["test_planar_log_det", "test_planar_reverse_kl"],
    },
    # Exercise 4: planar_reverse_kl
    {
        "name": "reverse-kl-wrong-sign",
        "cell": "planar_reverse_kl",
        "find": "return (log_q - log_target(z)).mean()",
        "replace": "return (log_target(z) - log_q).mean()",
        "loses": ["test_planar_reverse_kl"],
    },
    {
        "name": "reverse-kl-without-log-det",
        "cell": "planar_reverse_kl",
        "find": "log_q = log_q - planar_log_det(z, u_hat, w, b)",
        "replace": "log_q = log_q",
        "loses": ["test_planar_reverse_kl"],
    },
    {
        "name": "reverse-kl-log-det-added",
        "cell": "planar_reverse_kl",
        "find": "log_q = log_q - planar_log_det(z, u_hat, w, b)",
        "replace": "log_q = log_q + planar_log_det(z, u_hat, w, b)",
        "loses": ["test_planar_reverse_kl"],
    },
    {
        "name": "reverse-kl-raw-u-instead-of-u-hat",
        "cell": "planar_reverse_kl",
        "find": "u_hat = planar_u_hat(u, w)",
        "replace": "u_hat = u",
        "loses": ["test_planar_reverse_kl"],
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
        "loses": ["test_planar_reverse_kl"],
    },
    {
        "name": "reverse-kl-sum-instead-of-mean",
        "cell": "planar_reverse_kl",
        "find": "return (log_q - log_target(z)).mean()",
        "replace": "return (log_q - log_target(z)).sum()",
        "loses": ["test_planar_reverse_kl"],
    },
]
