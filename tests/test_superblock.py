"""The superblocks of the blocked exact recursion (``plrf.runners._superblock_advance``: ``J ms`` steps of a
time-invariant optimizer at a time, free losses and the moment update by matrix-matrix products, the losses of
the superblock by a Volterra solve with a Toeplitz history) against the independent numpy reference of
``tests/test_optimizers.py`` at rtol 1e-10.

Superblocks engage only where they pay (``nz d >= SUPERBLOCK_MIN_WIDTH``, d ~ 1e3 and up); here the thresholds
are lowered so that they engage at d = 16 with ``ms = 8``, ``J = 4`` (32 steps): the grid's intervals (1 to 163
steps) mix whole superblocks, 8-step blocks and single steps."""
import pytest

from plrf import optimizers as O
from plrf import runners

import test_optimizers as T
from test_optimizers import binned, inst, spec  # noqa: F401 (fixtures)


@pytest.fixture
def small_superblocks(monkeypatch):
    monkeypatch.setattr(runners, "SUPERBLOCK_MIN_WIDTH", 0)
    monkeypatch.setattr(runners, "SUPERBLOCK_SUB", 8)
    monkeypatch.setattr(runners, "SUPERBLOCK_COUNT", 4)


@pytest.mark.parametrize("name,B", [("nesterov-wd-ema", 3), ("momentum", 1)])
def test_superblocks_match_independent_reference(spec, binned, small_superblocks, name, B):
    """Unit and binned multiplicities, weight decay (first moments) and EMA included: the blocked recursion's test
    (the same grid and reference) with superblocks engaged."""
    opt, _, _ = T._case(name, B)
    assert runners.expected_superblock(opt, 16) == (8, 4)
    T.test_blocked_recursion_matches_independent_reference(spec, binned, name, B)


def test_superblock_choice():
    """Where superblocks engage by default: d = 1024 (momentum + EMA: nz = 6, ms = 128), not at d = 16 (their
    Toeplitz history would cost more than the matrix-vector blocks), not for time-dependent optimizers, and not
    when two (ms, nz d) matrices of at least 32 rows exceed SUPERBLOCK_BYTES."""
    ema = O.momentum(0.01, 0.9, ema=0.01)
    assert runners.expected_superblock(ema, 1024) == (runners.SUPERBLOCK_SUB, runners.SUPERBLOCK_COUNT)
    assert runners.expected_superblock(O.sgd(0.1), 1024) is not None
    assert runners.expected_superblock(ema, 16) is None
    assert runners.expected_superblock(O.dana_decaying(0.1, 0.1, delta=3.0, kappa=0.5), 4096) is None
    assert runners.expected_superblock(ema, 10 ** 6) is None
