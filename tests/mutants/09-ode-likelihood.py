"""Wrong implementations of assignment 09-ode-likelihood: see tests/mutants/__init__.py."""

BOTH_ODE = ["test_ode_log_likelihood_exact", "test_ode_log_likelihood_hutchinson"]

MUTANTS = [
    # Exercise 1: pf_drift (reused by Exercise 4, so both ODE cells fail too)
    {
        "name": "drift-g-instead-of-g-squared",
        "cell": "pf_drift",
        "find": "f - 0.5 * g**2 * score_fn(x, t)",
        "replace": "f - 0.5 * g * score_fn(x, t)",
        "loses": ["test_pf_drift"] + BOTH_ODE,
    },
    {
        "name": "drift-missing-one-half",
        "cell": "pf_drift",
        "find": "f - 0.5 * g**2 * score_fn(x, t)",
        "replace": "f - g**2 * score_fn(x, t)",
        "loses": ["test_pf_drift"] + BOTH_ODE,
    },
    {
        "name": "drift-scalar-time-passed-to-score",
        "cell": "pf_drift",
        "find": "    if t.dim() == 0:\n        t = t.expand(x.shape[0])\n",
        "replace": "",
        # the VP/VE coefficients and the mixture oracle broadcast a 0-dim t, but a score that
        # indexes t per sample (the visible Gaussian score of the exact-trace cell) breaks
        "loses": ["test_pf_drift", "test_ode_log_likelihood_exact"],
    },
    # Exercise 2: exact_divergence (Exercise 4 uses it for trace="exact")
    {
        "name": "divergence-sums-whole-jacobian",
        "cell": "exact_divergence",
        "find": "div = div + grad_i[:, i]",
        "replace": "div = div + grad_i.sum(1)",
        "loses": ["test_exact_divergence", "test_ode_log_likelihood_exact"],
    },
    {
        "name": "divergence-without-enable-grad",
        "cell": "exact_divergence",
        "find": "with torch.enable_grad():",
        "replace": "if True:",
        "loses": ["test_exact_divergence"],
    },
    {
        # issue 19 (raises clauses): "raise ValueError if x is not 2-D", here a 3-D x
        "name": "divergence-accepts-3d-x",
        "cell": "exact_divergence",
        "find": "if not isinstance(x, torch.Tensor) or x.dim() != 2:",
        "replace": "if not isinstance(x, torch.Tensor) or x.dim() < 2:",
        "loses": ["test_exact_divergence"],
    },
    # Exercise 3: hutchinson_divergence
    {
        "name": "hutchinson-probe-on-one-side",
        "cell": "hutchinson_divergence",
        "find": "return (vjp * probe).sum(1).detach()",
        "replace": "return vjp.sum(1).detach()",
        "loses": ["test_hutchinson_divergence", "test_ode_log_likelihood_hutchinson"],
    },
    {
        "name": "hutchinson-fresh-gaussian-probe",
        "cell": "hutchinson_divergence",
        "find": "(out * probe).sum(), x)",
        "replace": "(out * torch.randn_like(probe)).sum(), x)",
        "loses": ["test_hutchinson_divergence", "test_ode_log_likelihood_hutchinson"],
    },
    # Exercise 4: ode_log_likelihood
    {
        "name": "rk4-equal-weights",
        "cell": "ode_log_likelihood",
        "find": "y = y + h / 6 * (k1x + 2 * k2x + 2 * k3x + k4x)\n        delta = delta + h / 6 * (k1d + 2 * k2d + 2 * k3d + k4d)",
        "replace": "y = y + h / 4 * (k1x + k2x + k3x + k4x)\n        delta = delta + h / 4 * (k1d + k2d + k3d + k4d)",
        "loses": BOTH_ODE,
    },
    {
        "name": "log-density-integral-wrong-sign",
        "cell": "ode_log_likelihood",
        "find": "return (log_pT + delta).detach()",
        "replace": "return (log_pT - delta).detach()",
        "loses": BOTH_ODE,
    },
    {
        "name": "forgot-prior-log-density",
        "cell": "ode_log_likelihood",
        "find": "return (log_pT + delta).detach()",
        "replace": "return delta.detach()",
        "loses": BOTH_ODE,
    },
    {
        "name": "hutchinson-fresh-probe-per-evaluation",
        "cell": "ode_log_likelihood",
        "find": "div = hutchinson_divergence(drift, y, probe)",
        "replace": "div = hutchinson_divergence(drift, y, (2 * torch.randint(0, 2, x.shape, generator=generator, device=dev) - 1).to(x.device, x.dtype))",
        "loses": ["test_ode_log_likelihood_hutchinson"],
    },
    {
        # issue 19 (extremes): eps = T, the boundary of 0 < eps < T, must raise too
        "name": "ode-accepts-eps-equal-T",
        "cell": "ode_log_likelihood",
        "find": "if n_steps < 1 or not 0 < eps < sde.T:",
        "replace": "if n_steps < 1 or not 0 < eps <= sde.T:",
        "loses": ["test_ode_log_likelihood_exact"],
    },
    {
        "name": "time-grid-from-zero",
        "cell": "ode_log_likelihood",
        "find": "ts = torch.linspace(eps, sde.T, n_steps + 1, dtype=torch.float64)",
        "replace": "ts = torch.linspace(0.0, sde.T, n_steps + 1, dtype=torch.float64)",
        "loses": BOTH_ODE,
    },
]

_LAPLACIAN_BY_AUTOGRAD = '''    ### BEGIN SOLUTION
    # another correct style: the log-density by logsumexp, its Laplacian by double backward
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or weights.dim() != 1:
        raise ValueError("bad shapes")
    K, D = weights.shape[0], x.shape[1]
    if means.shape != (K, D) or variances.shape != (K,) or (weights <= 0).any() or (variances <= 0).any():
        raise ValueError("bad parameters")
    with torch.enable_grad():
        xg = x if x.requires_grad else x.detach().requires_grad_(True)
        sq = ((xg[:, None, :] - means[None]) ** 2).sum(-1)
        logp = torch.logsumexp(torch.log(weights) - 0.5 * D * torch.log(variances) - 0.5 * sq / variances, dim=1)
        (grad,) = torch.autograd.grad(logp.sum(), xg, create_graph=True)
        lap = sum(torch.autograd.grad(grad[:, i].sum(), xg, create_graph=True)[0][:, i] for i in range(D))
    return lap
'''

_TRAIN_PLAIN_MLP = '''    ### BEGIN SOLUTION
    # another correct style: flowlib's ScoreMLP on log sigma_t (output divided by sigma_t), constant learning rate
    mlp = flowlib.ScoreMLP(2, hidden=128, n_layers=3, conditioning="sigma").to(x_train.device)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = mlp

        def forward(self, x, t):
            return self.mlp(x, sde.marginal_coefficients(t)[1].clamp_min(1e-4))

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(n_steps):
        x0 = x_train[torch.randint(0, len(x_train), (256,)).to(x_train.device)]
        t = 1e-5 + (1 - 1e-5) * torch.rand(256).to(x0.device)
        std = sde.marginal_coefficients(t)[1][:, None]
        z = torch.randn(x0.shape).to(x0.device)
        loss = ((std * net(x0 + std * z, t) + z) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()
'''

MUTANTS += [
    # Exercise 5 (transfer): mixture_score_divergence
    {
        "name": "laplacian-naive-exp-responsibilities",
        "cell": "mixture_score_divergence",
        "find": "r = torch.softmax(log_terms, dim=1)",
        "replace": "r = torch.exp(log_terms) / torch.exp(log_terms).sum(1, keepdim=True)",
        "loses": ["test_mixture_score_divergence"],  # 0 / 0 far from every mean
    },
    {
        "name": "laplacian-forgets-minus-score-squared",
        "cell": "mixture_score_divergence",
        "find": "spread = (r * ((g - s) ** 2).sum(-1)).sum(1)",
        "replace": "spread = (r * (g**2).sum(-1)).sum(1)",
        "loses": ["test_mixture_score_divergence"],
    },
    {
        "name": "laplacian-one-over-v-not-D-over-v",
        "cell": "mixture_score_divergence",
        "find": "return spread - (r * (D / variances)).sum(1)",
        "replace": "return spread - (r * (1 / variances)).sum(1)",
        "loses": ["test_mixture_score_divergence"],
    },
    {
        "name": "laplacian-detached",
        "cell": "mixture_score_divergence",
        "find": "return spread - (r * (D / variances)).sum(1)",
        "replace": "return (spread - (r * (D / variances)).sum(1)).detach()",
        "loses": ["test_mixture_score_divergence"],  # the gradient check
    },
    {
        "name": "laplacian-accepts-zero-variance",
        "cell": "mixture_score_divergence",
        "find": "bool((variances > 0).all())",
        "replace": "bool((variances >= 0).all())",
        "loses": ["test_mixture_score_divergence"],
    },
    {
        "name": "laplacian-by-double-backward (correct, another style)",
        "cell": "mixture_score_divergence",
        "find": "    ### BEGIN SOLUTION\n",
        "replace": _LAPLACIAN_BY_AUTOGRAD,
        "loses": [],
    },
    # Exercise 6 (derivation)
    {
        "name": "derivation-scale-without-square-root",
        "cell": "ve_gauss_derivation",
        "find": "VE_GAUSS_SCALE = math.sqrt(_v(1.0) / _v(_eps))",
        "replace": "VE_GAUSS_SCALE = _v(1.0) / _v(_eps)",
        "loses": ["test_ve_gauss_derivation"],
    },
    {
        "name": "derivation-delta-for-one-dimension",
        "cell": "ve_gauss_derivation",
        "find": "VE_GAUSS_DELTA = 2 * math.log(VE_GAUSS_SCALE)",
        "replace": "VE_GAUSS_DELTA = math.log(VE_GAUSS_SCALE)",
        "loses": ["test_ve_gauss_derivation"],
    },
    {
        "name": "derivation-noise-variance-sigma-t-squared",
        "cell": "ve_gauss_derivation",
        "find": "return _s2 + _smin**2 * ((_smax / _smin) ** (2 * t) - 1)",
        "replace": "return _s2 + _smin**2 * (_smax / _smin) ** (2 * t)",
        "loses": ["test_ve_gauss_derivation"],  # score_sde's sigma(t)^2 instead of the exact sigma(t)^2 - sigma_min^2
    },
    # Exercise 7 (training, graded by outcome)
    {
        "name": "training-time-blind-network",
        "cell": "train_ve_score",
        "find": "torch.log(self.sde.sigma(t))[:, None]",
        "replace": "torch.zeros_like(t)[:, None]",
        "loses": ["test_train_ve_score"],
    },
    {
        "name": "training-dsm-target-sign",
        "cell": "train_ve_score",
        "find": "loss = (std[:, None] * net(x0 + std[:, None] * z, t) + z).pow(2).sum(1).mean()",
        "replace": "loss = (std[:, None] * net(x0 + std[:, None] * z, t) - z).pow(2).sum(1).mean()",
        "loses": ["test_train_ve_score"],
    },
    {
        "name": "training-plain-scoremlp (correct, another style)",
        "cell": "train_ve_score",
        "find": "    ### BEGIN SOLUTION\n    eps, batch = 1e-5, 256\n",
        "replace": _TRAIN_PLAIN_MLP,
        "loses": [],
    },
]
