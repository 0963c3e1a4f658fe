"""flowlib.testing must catch what it claims to catch: each check is run on a broken input."""
import pytest
import torch

import flowlib.flows.onedim as onedim
from flowlib import Bijection
from flowlib.flows.onedim import Affine, mixture_cdf
from flowlib.testing import (
    ReferenceBlockedError,
    block_reference,
    check_density_integrates,
    check_device_dtype,
    check_ladj_cancel,
    check_log_det,
    check_round_trip,
)


class WrongLogDet(Bijection):
    """z = 2x but claims log|det| = 0 (the classic forgotten Jacobian)."""

    def forward(self, x):
        return 2 * x, x.new_zeros(x.shape[0])

    def inverse(self, z):
        return z / 2, z.new_zeros(z.shape[0])


class WrongInverse(Bijection):
    def forward(self, x):
        return x + 1, x.new_zeros(x.shape[0])

    def inverse(self, z):
        return z + 1, z.new_zeros(z.shape[0])


class PerElementLogDet(Bijection):
    """Returns ladj per element instead of per sample."""

    def forward(self, x):
        return 2 * x, torch.full_like(x, 0.6931)

    def inverse(self, z):
        return z / 2, torch.full_like(z, -0.6931)


def test_round_trip_catches_wrong_inverse():
    with pytest.raises(AssertionError, match="round trip"):
        check_round_trip(WrongInverse(), torch.randn(4, 2))


def test_log_det_catches_missing_jacobian():
    with pytest.raises(AssertionError, match=r"log\|det\|: max error 1\.386"):
        check_log_det(WrongLogDet(), torch.randn(4, 2))


def test_log_det_catches_per_element_shape():
    with pytest.raises(AssertionError, match=r"shape \(batch,\)"):
        check_log_det(PerElementLogDet(), torch.randn(4, 2))


def test_ladj_cancel_catches_inconsistent_directions():
    class Lopsided(WrongLogDet):
        def forward(self, x):
            return 2 * x, x.new_full((x.shape[0],), 1.0)

    with pytest.raises(AssertionError, match="sum to 0"):
        check_ladj_cancel(Lopsided(), torch.randn(3, 2))


def test_log_det_passes_on_correct_affine_and_reports_error():
    err = check_log_det(Affine([1.0, 2.0], [3.0, -0.5], shape=(2,)), torch.randn(4, 2))
    assert err < 1e-10


def test_density_check_catches_unnormalised_density():
    with pytest.raises(AssertionError, match="integrates to 2.0"):
        check_density_integrates(lambda x: torch.log(torch.full_like(x[:, 0], 2.0)), [(0.0, 1.0)])
    with pytest.raises(AssertionError, match="integrates to"):
        check_density_integrates(lambda x: -0.5 * (x**2).sum(1), [(-8, 8), (-8, 8)], n=401)


def test_device_dtype_check_catches_dtype_change():
    with pytest.raises(AssertionError, match="dtype"):
        check_device_dtype(lambda x: x.float(), torch.zeros(2, dtype=torch.float64))


def test_block_reference_blocks_aliases_and_restores():
    alias = onedim.mixture_cdf  # a student might import it under another name first
    args = (torch.zeros(3), torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2))
    expected = mixture_cdf(*args)
    with block_reference("flowlib.flows.onedim.mixture_cdf", "flowlib.flows.onedim.MixtureCDF"):
        with pytest.raises(ReferenceBlockedError, match="flowlib.flows.onedim.mixture_cdf is the course's reference"):
            alias(*args)
        with pytest.raises(ReferenceBlockedError, match="MixtureCDF.__init__"):
            onedim.MixtureCDF(1, 2)
    after = alias(*args)
    assert all(torch.equal(a, b) for a, b in zip(after, expected))
    assert onedim.MixtureCDF(1, 2).logits.shape == (1, 2)


def test_block_reference_restores_after_an_exception():
    with pytest.raises(KeyError):
        with block_reference("flowlib.flows.onedim.bisection_inverse"):
            raise KeyError("student error")
    y = onedim.bisection_inverse(lambda t: t, torch.tensor([0.25]), 0.0, 1.0, iters=40)
    assert abs(y.item() - 0.25) < 1e-9


def test_block_reference_rejects_unknown_targets():
    with pytest.raises((ValueError, AttributeError)):
        with block_reference("flowlib.flows.onedim.no_such_thing"):
            pass


def test_block_reference_sees_through_decorators():
    import flowlib.diffusion.sde as sde

    assert sde.euler_maruyama.__code__.co_freevars, "the sampler is expected to be decorated"
    with block_reference("flowlib.diffusion.sde.euler_maruyama"):
        with pytest.raises(ReferenceBlockedError, match="euler_maruyama"):
            sde.euler_maruyama(lambda x, t: -x, sde.VPSDE(), (4, 2), n_steps=2)
    x = sde.euler_maruyama(lambda x, t: -x, sde.VPSDE(), (4, 2), n_steps=2)
    assert x.shape == (4, 2)


@pytest.mark.parametrize(
    "owner, name, fake",
    [
        ("torch", "allclose", lambda *a, **k: True),
        ("torch.testing", "assert_close", lambda *a, **k: None),
        ("numpy.testing", "assert_allclose", lambda *a, **k: None),
        ("math", "isclose", lambda *a, **k: True),
        ("builtins", "abs", lambda x: 0),
        ("torch.Tensor", "__lt__", lambda self, other: True),
        ("flowlib.testing", "check_round_trip", lambda *a, **k: 0.0),
    ],
)
def test_block_reference_detects_monkeypatching(owner, name, fake):
    import importlib

    from flowlib.tamper import TamperingError

    target = torch.Tensor if owner == "torch.Tensor" else importlib.import_module(owner)
    original = target.__dict__[name] if owner == "torch.Tensor" and name in target.__dict__ else getattr(target, name)
    setattr(target, name, fake)
    try:
        with pytest.raises(TamperingError, match=name):
            with block_reference("flowlib.flows.onedim.mixture_cdf"):
                pass
    finally:
        setattr(target, name, original)
    with block_reference("flowlib.flows.onedim.mixture_cdf"):  # restored: no complaint
        pass


def test_block_reference_detects_patching_inside_the_block():
    from flowlib.tamper import TamperingError

    original = torch.allclose
    try:
        with pytest.raises(TamperingError, match="torch.allclose"):
            with block_reference("flowlib.flows.onedim.mixture_cdf"):
                torch.allclose = lambda *a, **k: True
    finally:
        torch.allclose = original


def test_block_reference_detects_shadowed_builtins():
    from flowlib.tamper import TamperingError

    namespace = {"__name__": "__main__", "all": lambda *a: True, "max": torch.tensor(3.0)}
    code = "with block_reference('flowlib.flows.onedim.mixture_cdf'):\n    pass\n"
    with pytest.raises(TamperingError, match=r"all \(redefined in the notebook\)"):
        exec(code, dict(namespace, block_reference=block_reference))
    namespace.pop("all")  # a tensor named max is not a replacement of the builtin
    exec(code, dict(namespace, block_reference=block_reference))
