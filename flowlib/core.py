"""The flow contract every topic builds on.

A :class:`Bijection` maps data ``x`` to noise ``z`` in ``forward`` and back in ``inverse``;
both return the transformed tensor and ``ladj``, the log-absolute-determinant of the
Jacobian of *that* direction, one value per batch element. A :class:`Flow` pairs a
bijection with a base distribution and gives the change-of-variables density

    log p(x) = log p_Z(f(x)) + log|det df/dx|.
"""
from __future__ import annotations

import os
import random
import sys
from typing import Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn


def device() -> torch.device:
    """The device course code runs on: ``$FLOWLIB_DEVICE`` if set, else CUDA when available."""
    requested = os.environ.get("FLOWLIB_DEVICE")
    if requested:
        dev = torch.device(requested)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"FLOWLIB_DEVICE={requested!r} but torch.cuda.is_available() is False; "
                "unset FLOWLIB_DEVICE or set it to 'cpu'."
            )
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA); return a CPU generator with that seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def sum_except_batch(t: Tensor) -> Tensor:
    """Sum over every dimension but the first: per-element log-dets to per-sample ones."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


class Bijection(nn.Module):
    """An invertible map ``x -> z`` with tractable log-determinant.

    Subclasses implement ``forward(x) -> (z, ladj)`` with ``ladj = log|det dz/dx|`` and
    ``inverse(z) -> (x, ladj)`` with ``ladj = log|det dx/dz|``, each of shape ``(batch,)``.
    A direction without a closed form should raise :class:`NotImplementedError` with a
    message that says which direction is available.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement forward (data -> noise)")

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement inverse (noise -> data)")


class Compose(Bijection):
    """Composition ``f = f_K o ... o f_1``: ``forward`` applies the bijections in the given
    order and sums their log-dets (chain rule); ``inverse`` runs them in reverse order."""

    def __init__(self, *bijections: Bijection):
        super().__init__()
        if not bijections:
            raise ValueError("Compose needs at least one bijection")
        for b in bijections:
            if not isinstance(b, Bijection):
                raise TypeError(f"Compose expects Bijection instances, got {type(b).__name__}")
        self.bijections = nn.ModuleList(bijections)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ladj = x.new_zeros(x.shape[0])
        for b in self.bijections:
            x, l = b(x)
            ladj = ladj + l
        return x, ladj

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        ladj = z.new_zeros(z.shape[0])
        for b in reversed(self.bijections):
            z, l = b.inverse(z)
            ladj = ladj + l
        return z, ladj


class Inverse(Bijection):
    """Swap the two directions of a bijection: its cheap direction becomes the other one.

    Inverse autoregressive flows are ``Inverse(MAF layer)``: sampling becomes one pass."""

    def __init__(self, bijection: Bijection):
        super().__init__()
        self.bijection = bijection

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.bijection.inverse(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.bijection(z)


class Flow(nn.Module):
    """A normalizing flow: a base distribution on ``z`` and a bijection ``x -> z``.

    ``log_prob(x) = base.log_prob(f(x)) + log|det df/dx|``; ``sample`` draws ``z`` from the
    base and runs the inverse. The base keeps its parameters in buffers, so ``flow.to(dev)``
    moves everything.
    """

    def __init__(self, base: nn.Module, bijection: Bijection):
        super().__init__()
        self.base = base
        self.bijection = bijection

    def log_prob(self, x: Tensor) -> Tensor:
        z, ladj = self.bijection(x)
        return self.base.log_prob(z) + ladj

    def sample(self, n: int) -> Tensor:
        z = self.base.sample(n)
        x, _ = self.bijection.inverse(z)
        return x

    def sample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """Samples and their log-density from one inverse pass:
        ``log p(x) = log p_Z(z) - log|det dx/dz|``."""
        z = self.base.sample(n)
        x, ladj = self.bijection.inverse(z)
        return x, self.base.log_prob(z) - ladj


def nll_loss(model: nn.Module, batch: Tensor) -> Tensor:
    """Mean negative log-likelihood in nats: the maximum-likelihood objective."""
    return -model.log_prob(batch).mean()


def _progress_wanted() -> bool:
    """Progress bars only for a person watching: never while grading or when asked not to."""
    flag = os.environ.get("FLOWLIB_PROGRESS")
    if flag is not None:
        return flag.strip().lower() not in ("", "0", "false", "no")
    if os.environ.get("NBGRADER_EXECUTION"):
        return False
    if "ipykernel" in sys.modules:
        return True
    return sys.stderr.isatty()


def fit(
    model: nn.Module,
    data: Tensor | None = None,
    *,
    loss: Callable[[nn.Module, Tensor | None], Tensor] = nll_loss,
    steps: int = 1000,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    grad_clip: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool | None = None,
    params: Iterable[nn.Parameter] | None = None,
) -> list[float]:
    """Train ``model`` with Adam for ``steps`` minibatch steps; return the loss history.

    ``loss(model, batch)`` defaults to the negative log-likelihood. With ``data=None`` the
    loss is called with ``batch=None`` (e.g. reverse-KL training, which samples its own
    batch). Minibatches are drawn with replacement on ``data``'s device. A progress bar is
    shown only when someone is watching (see ``FLOWLIB_PROGRESS``).
    """
    if steps < 0 or batch_size < 1:
        raise ValueError(f"need steps >= 0 and batch_size >= 1, got steps={steps}, batch_size={batch_size}")
    params = list(model.parameters() if params is None else params)
    if not params:
        raise ValueError("fit: the model has no trainable parameters")
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    show = _progress_wanted() if progress is None else progress
    iterator: Iterable[int] = range(steps)
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(iterator, desc="fit", leave=False)
        iterator = bar
    history: list[float] = []
    for _ in iterator:
        batch = None
        if data is not None:
            idx = torch.randint(len(data), (batch_size,), generator=generator).to(data.device)
            batch = data[idx]
        value = loss(model, batch)
        if not torch.isfinite(value):
            raise FloatingPointError(f"fit: loss became {value.item()} at step {len(history)}; lower lr or clip gradients")
        opt.zero_grad(set_to_none=True)
        value.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        history.append(value.item())
        if bar is not None and len(history) % 50 == 0:
            bar.set_postfix(loss=f"{history[-1]:.4f}")
    return history
