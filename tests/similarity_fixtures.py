"""Six submissions of assignment 01's five exercises for tests/test_similarity.py, as
{grade_id: solution cell code}. The signature and docstring of each cell are the release's.

Honest, written independently in deliberately different styles:
  * ``hana``  - torch.distributions, Python loops, boolean-mask indexing, data-point init;
  * ``ivan``  - hand-written formulas (erf, lgamma), small helper functions, arithmetic masks,
                all parameters in one tensor;
  * ``june``  - a loop over mixture components, torch.where bisection, an nn.Module for the fit.
Copies:
  * ``alice`` - the reference solution (solutions/01-change-of-variables), verbatim;
  * ``bob``   - alice's code with every variable renamed, comments added or reworded,
                whitespace and line breaks changed;
  * ``carol`` - flowlib's own mixture_cdf and bisection_inverse pasted into the exercises
                (helpers inlined, arguments renamed to the exercise's), the rest her own.
"""
from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASG = "01-change-of-variables"
SOURCE = REPO / "solutions" / ASG / f"{ASG}.ipynb"

SIGNATURES = {
    "affine_log_prob": "def affine_log_prob(x, a, b):",
    "mixture_cdf": "def mixture_cdf(x, logits, means, log_scales):",
    "invert_by_bisection": "def invert_by_bisection(f, u, lo, hi, n_iter=60):",
    "cdf_flow_nll": 'def cdf_flow_nll(x, logits, means, log_scales, base="uniform"):',
    "fit_cdf_flow": "def fit_cdf_flow(x, n_components=6, steps=250, lr=0.05):",
}

# ------------------------------------------------------------------ honest: hana
HANA = {
    "affine_log_prob": '''
    if not torch.is_tensor(a):
        a = torch.tensor(a, dtype=x.dtype, device=x.device)
    if not torch.is_tensor(b):
        b = torch.tensor(b, dtype=x.dtype, device=x.device)
    a, b = a.to(x), b.to(x)
    if torch.any(a == 0):
        raise ValueError("a has a zero entry")
    standard = torch.distributions.Normal(torch.zeros((), dtype=x.dtype, device=x.device),
                                          torch.ones((), dtype=x.dtype, device=x.device))
    # change of variables: p(x) = p_z((x - b) / a) / |a|
    return standard.log_prob((x - b) / a) - a.abs().log()
''',
    "mixture_cdf": '''
    scales = log_scales.exp()
    components = torch.distributions.Normal(means, scales)
    xx = x[..., None]
    weights = torch.softmax(logits, dim=-1)
    F = (weights * components.cdf(xx)).sum(dim=-1)
    log_terms = torch.log_softmax(logits, dim=-1) + components.log_prob(xx)
    return F, torch.logsumexp(log_terms, dim=-1)
''',
    "invert_by_bisection": '''
    lower = torch.zeros_like(u) + lo
    upper = torch.zeros_like(u) + hi
    for step in range(n_iter):
        middle = (lower + upper) / 2
        too_small = f(middle) < u
        lower[too_small] = middle[too_small]
        upper[~too_small] = middle[~too_small]
    return (lower + upper) / 2
''',
    "cdf_flow_nll": '''
    u, log_jac = mixture_cdf(x, logits, means, log_scales)
    if base == "uniform":
        return -log_jac.mean()
    elif base == "beta":
        five = torch.tensor(5.0, dtype=x.dtype, device=x.device)
        prior = torch.distributions.Beta(five, five)
        return -(prior.log_prob(u) + log_jac).mean()
    else:
        raise ValueError("unknown base " + str(base))
''',
    "fit_cdf_flow": '''
    picks = torch.randperm(x.shape[0])[:n_components].to(x.device)
    mu = x[picks].sort().values.clone().requires_grad_()
    spread = torch.log(x.std()).item()
    log_sigma = torch.full((n_components,), spread, dtype=x.dtype, device=x.device, requires_grad=True)
    w_logits = torch.zeros(n_components, dtype=x.dtype, device=x.device, requires_grad=True)
    adam = torch.optim.Adam([w_logits, mu, log_sigma], lr=lr)
    step = 0
    while step < steps:
        adam.zero_grad()
        nll = cdf_flow_nll(x, w_logits, mu, log_sigma)
        nll.backward()
        adam.step()
        step += 1
    return tuple(p.detach() for p in (w_logits, mu, log_sigma))
''',
}

# ------------------------------------------------------------------ honest: ivan
IVAN = {
    "affine_log_prob": '''
    LOG_2PI = math.log(2.0 * math.pi)
    scale = torch.as_tensor(a, dtype=x.dtype).to(x.device)
    shift = torch.as_tensor(b, dtype=x.dtype).to(x.device)
    if bool((scale == 0).any()):
        raise ValueError(f"scale must be non-zero, got {scale}")
    std = (x - shift) / scale
    return -(std * std + LOG_2PI) / 2 - torch.log(scale.abs())
''',
    "mixture_cdf": '''
    def phi_cdf(s):
        return 0.5 * torch.erfc(-s / math.sqrt(2.0))

    def log_phi(s):
        return -0.5 * (s * s + math.log(2.0 * math.pi))

    inv_sigma = torch.exp(-log_scales)
    s = (x[..., None] - means) * inv_sigma
    pi = torch.nn.functional.softmax(logits, dim=-1)
    cdf = torch.sum(pi * phi_cdf(s), dim=-1)
    log_pdf = torch.logsumexp(torch.log(pi) + log_phi(s) + torch.log(inv_sigma), dim=-1)
    return cdf, log_pdf
''',
    "invert_by_bisection": '''
    a = torch.broadcast_to(torch.as_tensor(lo, dtype=u.dtype, device=u.device), u.shape)
    b = torch.broadcast_to(torch.as_tensor(hi, dtype=u.dtype, device=u.device), u.shape)
    remaining = n_iter
    while remaining > 0:
        c = a + (b - a) / 2
        right = (f(c) >= u).to(u.dtype)
        a, b = right * a + (1 - right) * c, right * c + (1 - right) * b
        remaining -= 1
    return a + (b - a) / 2
''',
    "cdf_flow_nll": '''
    def log_beta55(v):
        log_norm = 2 * math.lgamma(5.0) - math.lgamma(10.0)
        return 4 * (torch.log(v) + torch.log1p(-v)) - log_norm

    bases = {"uniform": lambda v: torch.zeros_like(v), "beta": log_beta55}
    if base not in bases:
        raise ValueError(f"base should be one of {list(bases)}")
    value, log_deriv = mixture_cdf(x, logits, means, log_scales)
    return torch.mean(-bases[base](value) - log_deriv)
''',
    "fit_cdf_flow": '''
    lo, hi = x.min().item(), x.max().item()
    theta = torch.stack([
        torch.zeros(n_components),
        torch.linspace(lo, hi, n_components),
        torch.full((n_components,), math.log((hi - lo) / n_components)),
    ]).to(dtype=x.dtype, device=x.device).requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        objective = cdf_flow_nll(x, theta[0], theta[1], theta[2], base="uniform")
        objective.backward()
        opt.step()
    final = theta.detach()
    return final[0].clone(), final[1].clone(), final[2].clone()
''',
}

# ------------------------------------------------------------------ honest: june
JUNE = {
    "affine_log_prob": '''
    a_t = torch.as_tensor(a, dtype=x.dtype, device=x.device)
    b_t = torch.as_tensor(b, dtype=x.dtype, device=x.device)
    if torch.count_nonzero(a_t) < a_t.numel():
        raise ValueError("affine_log_prob needs a != 0 everywhere")
    log_norm_const = 0.5 * math.log(2 * math.pi)
    return -0.5 * torch.square((x - b_t) / a_t) - log_norm_const - torch.log(torch.abs(a_t))
''',
    "mixture_cdf": '''
    K = logits.shape[-1]
    log_weights = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    cdf_total = 0.0
    log_parts = []
    for k in range(K):
        sigma_k = torch.exp(log_scales[..., k])
        z_k = (x - means[..., k]) / sigma_k
        cdf_total = cdf_total + torch.exp(log_weights[..., k]) * torch.special.ndtr(z_k)
        log_parts.append(log_weights[..., k] - 0.5 * z_k ** 2 - log_scales[..., k]
                         - 0.5 * math.log(2 * math.pi))
    log_dens = torch.logsumexp(torch.stack(log_parts, dim=-1), dim=-1)
    return cdf_total.clamp(0.0, 1.0), log_dens
''',
    "invert_by_bisection": '''
    a = torch.full_like(u, 0.0) + torch.as_tensor(lo, dtype=u.dtype, device=u.device)
    b = torch.full_like(u, 0.0) + torch.as_tensor(hi, dtype=u.dtype, device=u.device)
    for i in range(n_iter):
        c = (a + b) / 2
        fc = f(c)
        a = torch.where(fc < u, c, a)
        b = torch.where(fc < u, b, c)
    return (a + b) / 2
''',
    "cdf_flow_nll": '''
    F, log_dF = mixture_cdf(x, logits, means, log_scales)
    if base == "beta":
        conc = torch.tensor(5.0, dtype=x.dtype, device=x.device)
        log_p_u = torch.distributions.Beta(conc, conc).log_prob(F)
    elif base == "uniform":
        log_p_u = torch.zeros_like(F)
    else:
        raise ValueError(f"cdf_flow_nll: no base called {base}")
    log_p_x = log_p_u + log_dF
    return -log_p_x.mean()
''',
    "fit_cdf_flow": '''
    class CDFFlow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            qs = torch.quantile(x, torch.linspace(0.1, 0.9, n_components, dtype=x.dtype, device=x.device))
            self.logits = torch.nn.Parameter(torch.zeros_like(qs))
            self.means = torch.nn.Parameter(qs.clone())
            self.log_scales = torch.nn.Parameter(torch.zeros_like(qs) + math.log(x.std().item() / 2))

        def forward(self, data):
            return cdf_flow_nll(data, self.logits, self.means, self.log_scales)

    model = CDFFlow()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for it in range(steps):
        loss = model(x)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return model.logits.clone(), model.means.clone(), model.log_scales.clone()
''',
}

# ------------------------------------------------------------------ copy: bob (of alice = the reference)
BOB = {
    "affine_log_prob": '''
    # turn the parameters into tensors like x
    scl = torch.as_tensor(a, dtype = x.dtype, device = x.device)
    off = torch.as_tensor(b, dtype = x.dtype, device = x.device)
    if (scl == 0).any():
        raise ValueError("zero scale is not allowed")

    # standardise
    u = (x - off) / scl
    logscl = torch.log( torch.abs(scl) )
    return -0.5*u**2 - 0.5*math.log(2*math.pi) - logscl
''',
    "mixture_cdf": '''
    # mixture weights in log space
    lw = torch.log_softmax(logits, dim=-1)
    std_x = (x.unsqueeze(-1) - means) / torch.exp(log_scales)
    lp = -0.5 * std_x**2 - 0.5 * math.log(2 * math.pi)   # log of standard normal pdf
    cdf = (lw + torch.special.log_ndtr(std_x)).logsumexp(dim=-1).exp()
    logdens = (lw + lp
               - log_scales).logsumexp(dim=-1)
    return cdf, logdens
''',
    "invert_by_bisection": '''
    low = torch.as_tensor(lo, dtype=u.dtype, device=u.device).expand_as(u).clone()
    high = torch.as_tensor(hi, dtype=u.dtype, device=u.device).expand_as(u).clone()
    for it in range(n_iter):
        m = 0.5 * (low + high)   # midpoint
        go_right = f(m) < u
        low = torch.where(go_right, m, low)
        high = torch.where(go_right, high, m)
    return 0.5 * (low + high)
''',
    "cdf_flow_nll": '''
    if base not in ("uniform", "beta"):
        raise ValueError(f"unsupported base {base!r}")
    v, logdet = mixture_cdf(x, logits, means, log_scales)
    if base == "uniform":
        lb = torch.zeros_like(v)
    else:  # Beta(5, 5)
        lb = 4.0*torch.log(v) + 4.0*torch.log1p(-v) + math.log(630.0)
    return -(lb + logdet).mean()
''',
    "fit_cdf_flow": '''
    kw = dict(dtype=x.dtype, device=x.device)
    qs = torch.linspace(0.05, 0.95, n_components, **kw)
    mu = torch.quantile(x, qs).detach().clone().requires_grad_(True)
    ls = torch.full((n_components,), math.log(0.5*x.std().item() + 1e-3), **kw).requires_grad_(True)
    lg = torch.zeros(n_components, **kw).requires_grad_(True)
    opt = torch.optim.Adam([lg, mu, ls], lr=lr)
    for _ in range(steps):
        nll = cdf_flow_nll(x, lg, mu, ls, base="uniform")
        opt.zero_grad()
        nll.backward()
        opt.step()
    return lg.detach(), mu.detach(), ls.detach()
''',
}

# ------------------------------------------------------------------ copy: carol (flowlib pasted)
CAROL = {
    "affine_log_prob": '''
    a = torch.as_tensor(a, dtype=x.dtype, device=x.device)
    if (a == 0).any():
        raise ValueError("a must be nonzero")
    return torch.distributions.Normal(b, a.abs()).log_prob(x)
''',
    "mixture_cdf": '''
    kind = "gaussian"
    _LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

    def _normal_log_cdf_pair(s):
        """(log Phi(s), log phi(s)) for the standard normal."""
        return torch.special.log_ndtr(s), -0.5 * s**2 - _LOG_SQRT_2PI

    _KINDS = {"gaussian": _normal_log_cdf_pair}
    if kind not in _KINDS:
        raise ValueError(f"mixture_cdf: kind must be one of {sorted(_KINDS)}, got {kind!r}")
    if not (logits.shape[-1] == means.shape[-1] == log_scales.shape[-1]):
        raise ValueError(
            f"mixture_cdf: logits, means and log_scales need the same number of components in their last "
            f"dimension, got {logits.shape[-1]}, {means.shape[-1]}, {log_scales.shape[-1]}"
        )
    log_w = torch.log_softmax(logits, dim=-1)
    s = (x.unsqueeze(-1) - means) * torch.exp(-log_scales)
    log_cdf, log_pdf = _KINDS[kind](s)
    # clamp: in float32 the weights can sum to 1 + 1 ulp, and F = 1.0000001 is outside [0, 1]
    cdf = torch.logsumexp(log_w + log_cdf, dim=-1).exp().clamp(max=1.0)
    log_density = torch.logsumexp(log_w + log_pdf - log_scales, dim=-1)
    return cdf, log_density
''',
    "invert_by_bisection": '''
    y, iters = u, n_iter
    lo = torch.as_tensor(lo, dtype=y.dtype, device=y.device).expand_as(y).clone()
    hi = torch.as_tensor(hi, dtype=y.dtype, device=y.device).expand_as(y).clone()
    f_lo, f_hi = f(lo), f(hi)
    if not ((f_lo <= y) & (y <= f_hi)).all():
        raise ValueError(
            f"bisection_inverse: target outside [f(lo), f(hi)] (targets in [{y.min().item():.4g}, {y.max().item():.4g}], "
            f"f(lo) up to {f_lo.max().item():.4g}, f(hi) down to {f_hi.min().item():.4g}); widen the bracket"
        )
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        below = f(mid) < y
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return 0.5 * (lo + hi)
''',
    "cdf_flow_nll": '''
    u, ld = mixture_cdf(x, logits, means, log_scales)
    if base == "uniform":
        return -ld.mean()
    if base == "beta":
        c = torch.tensor(5.0, dtype=x.dtype, device=x.device)
        return -(torch.distributions.Beta(c, c).log_prob(u) + ld).mean()
    raise ValueError(base)
''',
    "fit_cdf_flow": '''
    means = torch.quantile(x, torch.linspace(0.1, 0.9, n_components, dtype=x.dtype, device=x.device)).requires_grad_()
    log_scales = torch.zeros(n_components, dtype=x.dtype, device=x.device).requires_grad_()
    logits = torch.zeros(n_components, dtype=x.dtype, device=x.device).requires_grad_()
    opt = torch.optim.Adam([logits, means, log_scales], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        value = cdf_flow_nll(x, logits, means, log_scales)
        value.backward()
        opt.step()
    return logits.detach(), means.detach(), log_scales.detach()
''',
}

HONEST = {"hana": HANA, "ivan": IVAN, "june": JUNE}
COPIES = ("alice", "bob", "carol")


def _source_notebook() -> dict:
    return json.loads(SOURCE.read_text())


def _docstring_and_signature(code: str) -> str:
    """The release's part of a solution cell: everything before ``### BEGIN SOLUTION``."""
    return code.split("### BEGIN SOLUTION")[0].rstrip() + "\n"


def reference_cells() -> dict[str, str]:
    """alice: the reference solution cells as they are in solutions/ (template lines included,
    as a student who obtained the source notebook would hand them in)."""
    out = {}
    for cell in _source_notebook()["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell.get("cell_type") == "code":  # written answers are not code
            src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            out[meta["grade_id"]] = src
    return out


def cells(student: str) -> dict[str, str]:
    """grade_id -> full solution-cell code (signature and docstring from the release)."""
    ref = reference_cells()
    if student == "alice":
        return ref
    bodies = {"hana": HANA, "ivan": IVAN, "june": JUNE, "bob": BOB, "carol": CAROL}[student]
    # An exercise added to the assignment after these fixtures were written has no body here:
    # it is left as released (the stub nbgrader leaves, which copy detection subtracts), so it
    # neither adds nor hides similarity; see covered_tests() for what is then scored.
    return {gid: _docstring_and_signature(ref[gid]) + (bodies[gid].strip("\n") if gid in bodies else
                                                        "    raise NotImplementedError()") + "\n"
            for gid in ref}


def covered_tests() -> list[str]:
    """The graded test cells of the exercises these fixtures write (each test cell belongs to
    the solution cell above it): every fixture student must score them in full."""
    covered, current = [], None
    for cell in _source_notebook()["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell.get("cell_type") == "code":
            current = meta.get("grade_id")
        elif meta.get("grade") and cell.get("cell_type") == "code" and current in HANA:
            covered.append(meta["grade_id"])
    return covered


def notebook(student: str) -> dict:
    """The source notebook with its solution cells replaced by ``student``'s (as nbformat JSON)."""
    nb = _source_notebook()
    mine = cells(student)
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and meta.get("grade_id") in mine and cell.get("cell_type") == "code":
            cell["source"] = mine[meta["grade_id"]]
            cell["outputs"] = []
            cell["execution_count"] = None
    return nb


STUDENTS = ("alice", "bob", "carol", "hana", "ivan", "june")
