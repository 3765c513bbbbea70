"""Tests of theory.phases: classification, boundaries, derived exponents vs closed forms and vs minimization.

The closed forms below are typed from shared/notes/theory.md section 5 (the module derives its own from the
component exponents; these tests compare the two).
"""
import math

import numpy as np
import pytest
import sympy as sp

from theory import phases as PH

a, b = PH.ALPHA, PH.BETA
S2 = 1 - 1 / math.sqrt(2)
NOTES_TABLE = {
    "Ia": (1 / (2 * a + 1), (2 * a + 2 * b - 1) / (2 * a + 1)),
    "Ib": (sp.Rational(1, 2), a + b - sp.Rational(1, 2)),
    "Ic": ((2 * a + 2 * b - 1) / (2 * (1 - a) * (2 * b - 1) + 4 * a),
           2 * a * (2 * a + 2 * b - 1) / (2 * (1 - a) * (2 * b - 1) + 4 * a)),
    "II": (b / (a + b), (2 * a + 2 * b - 1) / (2 * (a + b))),
    "III": (sp.Rational(1, 2), 1 - 1 / (4 * a)),
    "IVa": ((b - a) / (2 * b * (1 - a) - a), (1 - 2 * a) * (2 * a + 2 * b - 1) / (2 * (2 * b * (1 - a) - a))),
    "IVb": (sp.Rational(1, 2), a),
}
NOTES_PAIRS = {"Ia": {"Fpp", "F0"}, "Ib": {"Fpp", "F0"}, "Ic": {"Fpp", "F0"}, "II": {"Fpp", "Fac"},
               "III": {"noise", "Fac"}, "IVa": {"Fpp", "noise"}, "IVb": {"noise", "F0"}}


def random_points(phase, n, rng):
    """Uniform points of a phase, at least 0.02 away from its boundaries, in 0 < a < 2, 0 < b < 2.5."""
    out = []
    while len(out) < n:
        x, y = rng.uniform(0.01, 2.0), rng.uniform(0.0, 2.5)
        pp = PH.phase_point(x, y, tol=0.02)
        if pp.phase == phase and not pp.boundaries:
            out.append((x, y))
    return out


@pytest.mark.parametrize("point,phase", [
    ((1.0, 0.3), "Ia"), ((0.4, 0.3), "Ib"), ((0.15, 0.9), "Ic"), ((0.1, 0.45), "Ib"), ((1.0, 0.7), "II"),
    ((0.7, 1.2), "III"), ((0.27, 1.0), "IVa"), ((0.4, 1.0), "IVb"), ((0.2, 0.2), "inadmissible"),
    ((-0.1, 1.0), "inadmissible"), ((2.0, -1.0), "Ia"), ((2.0, -1.6), "inadmissible"),
])
def test_classify_known_points(point, phase):
    assert PH.classify(*point) == phase


@pytest.mark.parametrize("point,boundary,adjacent", [
    ((0.7, 0.7), "beta=alpha", {"II", "III"}),
    ((1.0, 0.5), "beta=1/2", {"Ia", "II"}),
    ((0.1, 0.5), "beta=1/2", {"Ib", "Ic"}),
    ((0.35, 0.5), "beta=1/2", {"Ib", "IVb"}),
    ((0.5, 0.3), "alpha=1/2", {"Ia", "Ib"}),
    ((0.5, 1.3), "alpha=1/2", {"IVb", "III"}),
    ((0.25, 0.8), "alpha=1/4", {"Ic", "IVa"}),
    ((S2, 1.0), "alpha=1-1/sqrt2", {"IVa", "IVb"}),
    ((0.3, 0.2), "admissible", {"Ib", "inadmissible"}),
])
def test_boundary_detection(point, boundary, adjacent):
    pp = PH.phase_point(*point, tol=1e-6)
    assert pp.boundaries == (boundary,)
    assert set(pp.adjacent) == adjacent
    # 2e-6 away along the normal the point is no longer on it
    r2 = 1 / math.sqrt(2)
    n = {"beta=alpha": (r2, -r2), "beta=1/2": (0.0, 1.0), "admissible": (r2, r2)}.get(boundary, (1.0, 0.0))
    off = PH.phase_point(point[0] + 2e-6 * n[0], point[1] + 2e-6 * n[1], tol=1e-6)
    assert off.boundaries == () and len(off.adjacent) == 1


def test_restricted_boundaries_and_corners():
    assert PH.phase_point(0.25, 0.3).boundaries == ()        # alpha = 1/4 only separates phases for beta > 1/2
    assert PH.phase_point(0.8, 0.8 - 1e-7).boundaries == ("beta=alpha",)
    assert PH.phase_point(0.3, 0.3).boundaries == ()         # beta = alpha only for alpha > 1/2
    assert set(PH.phase_point(0.5, 0.5).boundaries) == {"beta=1/2", "alpha=1/2", "beta=alpha"}
    assert PH.phase_point(0.9, 0.5 + 5e-7).boundaries == ("beta=1/2",)
    with pytest.raises(ValueError, match="alpha"):
        PH.classify(float("nan"), 1.0)


@pytest.mark.parametrize("phase", PH.PHASES)
def test_symbolic_exponents_equal_notes_table(phase):
    xi, eta = PH.symbolic_exponents(phase)
    xi_n, eta_n = NOTES_TABLE[phase]
    assert sp.simplify(xi - xi_n) == 0
    assert sp.simplify(eta - eta_n) == 0
    # the balanced pair found by the LP is the notes' pair (Ib: plus a tie with the 2b < 1 noise term)
    assert NOTES_PAIRS[phase] <= set(PH.dominant_pair(phase))


@pytest.mark.parametrize("phase", PH.PHASES)
def test_symbolic_equals_linear_program_throughout_phase(phase):
    # the pair read off at one point is the active pair everywhere in the phase (30 random points, 1e-9)
    xi_s, eta_s = PH.symbolic_exponents(phase)
    f = sp.lambdify((a, b), (xi_s, eta_s))
    for x, y in random_points(phase, 30, np.random.default_rng(PH.PHASES.index(phase))):
        e = PH.exponents(x, y)
        xs, es = f(x, y)
        assert abs(e.eta - es) < 1e-9 and abs(e.xi - xs) < 1e-9, (phase, x, y)


def _boundary_samples():
    """(name, point on it, unit normal) along every boundary."""
    out = []
    for y in (0.05, 0.3, 0.45):
        out.append(("alpha=1/2", (0.5, y), (1.0, 0.0)))
    for y in (0.7, 1.0, 2.0):
        out.append(("alpha=1/2", (0.5, y), (1.0, 0.0)))
        out.append(("alpha=1/4", (0.25, y), (1.0, 0.0)))
        out.append(("alpha=1-1/sqrt2", (S2, y), (1.0, 0.0)))
    for x in (0.05, 0.2, 0.3, 0.45, 0.7, 1.5):
        out.append(("beta=1/2", (x, 0.5), (0.0, 1.0)))
    for x in (0.6, 1.0, 2.0):
        out.append(("beta=alpha", (x, x), (1 / math.sqrt(2), -1 / math.sqrt(2))))
    return out


@pytest.mark.parametrize("name,p,n", _boundary_samples())
def test_eta_continuous_across_boundaries(name, p, n):
    # evaluate at +-1e-6 along the normal: |jump| < 1e-5 (the exponents are Lipschitz with constant < 5)
    h = 1e-6
    plus = PH.exponents(p[0] + h * n[0], p[1] + h * n[1])
    minus = PH.exponents(p[0] - h * n[0], p[1] - h * n[1])
    assert PH.classify(p[0] + h * n[0], p[1] + h * n[1]) != PH.classify(p[0] - h * n[0], p[1] - h * n[1])
    assert abs(plus.eta - minus.eta) < 1e-5
    if name != "alpha=1-1/sqrt2":   # xi is continuous too, except across IVa | IVb where it jumps
        assert abs(plus.xi - minus.xi) < 1e-5
    else:
        assert abs(plus.xi - minus.xi) > 0.05


def test_eta_at_paper_point_and_iv_split():
    e = PH.exponents(0.7, 0.7)
    assert abs(e.eta - 0.643) < 5e-4 and abs(e.eta - 9 / 14) < 1e-12    # (2a+2b-1)/(2(a+b)) = 1 - 1/(4a) = 9/14
    # on the IVa|IVb line the maximizer is an interval [1/2, (b-a)/(2b(1-a)-a)], eta = a
    on = PH.exponents(S2, 1.0)
    assert abs(on.xi_range[0] - 0.5) < 1e-9
    assert abs(on.xi_range[1] - (1 - S2) / (2 * (1 - S2) - S2)) < 1e-9
    assert abs(on.eta - S2) < 1e-9


@pytest.mark.parametrize("phase,point,decades", [
    ("Ia", (1.0, 0.3), (20, 30)), ("Ia", (0.6, 0.3), (20, 30)), ("Ib", (0.4, 0.3), (20, 30)),
    ("Ib", (0.1, 0.45), (20, 30)), ("Ic", (0.15, 0.9), (20, 30)), ("II", (1.0, 0.7), (20, 30)),
    ("II", (0.8, 0.6), (20, 30)), ("III", (0.7, 1.2), (20, 30)), ("III", (0.6, 1.0), (20, 30)),
    ("IVa", (0.26, 1.0), (20, 30)), ("IVb", (0.4, 1.0), (20, 30)), ("IVb", (0.45, 0.6), (20, 30)),
    # IVa is a thin strip where F_0 trails the balanced pair by only ~0.02-0.03 in the exponent: at
    # f = 1e20..1e30 the slopes are still off by ~0.012; at 1e40..1e60 they agree
    ("IVa", (0.27, 1.0), (40, 60)), ("IVa", (0.28, 1.5), (40, 60)),
])
def test_numerical_minimization_agrees_with_symbolic(phase, point, decades):
    nf = PH.minimize_numeric(*point, np.logspace(*decades, 11))
    xi, eta = (float(e.subs({a: point[0], b: point[1]})) for e in PH.symbolic_exponents(phase))
    assert PH.classify(*point) == phase
    assert abs(nf.xi - xi) < 0.01      # brief: within 0.01
    assert abs(nf.eta - eta) < 0.01


def test_minimization_is_a_real_minimum_and_lr_scaling_matters():
    # the returned d minimizes the loss: +-1% in d raises it (checks the optimizer, not the exponents)
    nf = PH.minimize_numeric(0.4, 1.0, [1e24])
    loss = PH._asymptotic_loss(0.4, 1.0, 0.5, 4.0)
    lf, ld = math.log(1e24), math.log(nf.d_opt[0])
    base = loss(ld, lf - ld)
    assert loss(ld + 0.01, lf - ld - 0.01) > base and loss(ld - 0.01, lf - ld + 0.01) > base
    # below the high-dimensional line the exponents depend on the lr scaling: the LP with nu = 1 - 2a gives Ib's
    # xi = 1/2, while the same balance with a constant lr would give Ia's 1/(2a+1)
    assert abs(PH.exponents(0.4, 0.3).xi - 0.5) < 1e-12
    const_lr_xi = 1 / (2 * 0.4 + 1)
    assert abs(PH.exponents(0.4, 0.3).xi - const_lr_xi) > 0.05


def test_component_exponents_and_errors():
    # III at (0.7, 1.2): F0 d^{-1.4}, Fpp t^{-(2a+2b-1)/(2a)}, Fac d^{-1} t^{-(1-1/(2a))}, noise t^{-(2-1/(2a))}
    ce = {n: (p, q) for n, p, q in PH.component_exponents(0.7, 1.2)}
    assert ce["F0"] == pytest.approx((1.4, 0.0))
    assert ce["Fpp"] == pytest.approx((0.0, 2.8 / 1.4))
    assert ce["Fac"] == pytest.approx((1.0, 1 - 1 / 1.4))
    assert ce["noise"] == pytest.approx((0.0, 2 - 1 / 1.4))
    with pytest.raises(ValueError, match="inadmissible"):
        PH.exponents(0.1, 0.1)
    with pytest.raises(ValueError, match="phase"):
        PH.symbolic_exponents("V")


# ------------------------------------------------------------------ DANA: exponents under its effective time
# points inside each region of constant balanced pair under DANA (DANA splits II and III: F_0 = F_ac at large alpha)
DANA_REGIONS = {
    "dana-decaying": [(0.8, 0.3), (1.0, 0.7), (0.7, 1.2), (1.7, 1.2), (1.5, 2.2), (0.4, 1.0), (0.27, 1.0),
                      (0.15, 0.9), (0.4, 0.35)],
    "dana-constant": [(0.8, 0.3), (1.0, 0.7), (0.7, 1.2), (1.2, 2.3), (0.4, 1.0), (0.15, 0.9)],
}


@pytest.mark.parametrize("optimizer", sorted(DANA_REGIONS))
def test_dana_symbolic_equals_linear_program_in_its_region(optimizer):
    # the formula derived at one point holds wherever the LP balances the same pair (1e-9), and DANA is never
    # worse than SGD
    rng = np.random.default_rng(7)
    pts = [(rng.uniform(0.05, 2.0), rng.uniform(0.0, 2.5)) for _ in range(600)]
    pts = [p for p in pts if PH.classify(*p) != "inadmissible" and not PH.phase_point(*p, tol=0.03).boundaries]
    checked = 0
    for rep in DANA_REGIONS[optimizer]:
        xi_s, eta_s, pair = PH.symbolic_exponents_at(*rep, optimizer)
        f = sp.lambdify((a, b), (xi_s, eta_s))
        for x, y in pts:
            e = PH.exponents(x, y, optimizer)
            assert e.eta >= PH.exponents(x, y).eta - 1e-12
            if set(pair) <= set(e.active) and PH.classify(x, y) == PH.classify(*rep):
                xs, es = f(x, y)
                if abs(e.xi_range[1] - e.xi_range[0]) < 1e-12:
                    assert abs(e.eta - es) < 1e-9 and abs(e.xi - xs) < 1e-9, (optimizer, rep, x, y)
                    checked += 1
    assert checked > 150


def test_dana_decaying_closed_forms_and_no_gain_below_the_line():
    # hand derivation: SGD's balance with every t-exponent q multiplied by g = 2 - 1/(2 alpha)
    g = 2 - 1 / (2 * a)
    forms = {  # phase: (xi, eta)
        "Ia": (g / (2 * a + g), (2 * a + 2 * b - 1) * g / (2 * a + g)),
        "II": (g * b / (a + g * b), (2 * a + 2 * b - 1) * g / (2 * (a + g * b))),
        "III": (g / (1 + g), g / (1 + g) * (2 - 1 / (2 * a))),
    }
    for phase, (xi_h, eta_h) in forms.items():
        xi, eta = PH.symbolic_exponents(phase, "dana-decaying")
        assert sp.simplify(xi - xi_h) == 0 and sp.simplify(eta - eta_h) == 0, phase
    # 2 alpha < 1: kappa = 1/(2 alpha) > 1, the momentum's effective time t^(2 - kappa) loses to SGD's t
    rng = np.random.default_rng(3)
    for _ in range(200):
        x, y = rng.uniform(0.05, 0.49), rng.uniform(0.0, 2.5)
        if PH.classify(x, y) == "inadmissible":
            continue
        assert PH.exponents(x, y, "dana-decaying") == PH.exponents(x, y)
    # DANA-constant gains nothing where SGD's optimum has t <= d (xi >= 1/2: III, every 2 alpha < 1 phase)
    for pt in ((0.7, 1.2), (0.4, 1.0), (0.27, 1.0), (0.15, 0.9), (0.4, 0.35)):
        assert PH.exponents(*pt, "dana-constant").eta == pytest.approx(PH.exponents(*pt).eta, abs=1e-12)


@pytest.mark.parametrize("optimizer,point", [("dana-decaying", (0.8, 0.3)), ("dana-decaying", (1.0, 0.7)),
                                             ("dana-decaying", (0.7, 1.2)), ("dana-decaying", (1.5, 2.2)),
                                             ("dana-constant", (1.0, 0.7)), ("dana-constant", (0.8, 0.3))])
def test_dana_numerical_minimization_agrees_with_linear_program(optimizer, point):
    # independent of the LP: minimise the sum of the components with their constants at the effective time
    # tau = t + c t^k / d^e over d, at f = 1e20 .. 1e30 (0.005, as for SGD 0.1 away from a boundary)
    e = PH.exponents(*point, optimizer)
    r = PH.minimize_numeric(*point, optimizer=optimizer)
    assert abs(r.eta - e.eta) < 5e-3 and abs(r.xi - e.xi) < 5e-3, (r.xi, r.eta, e)
    assert r.eta > PH.exponents(*point).eta + 0.05 or optimizer == "dana-decaying" and point == (0.7, 1.2)


def test_time_maps_bad_name():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        PH.exponents(1.0, 0.7, "adam")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        PH.minimize_numeric(1.0, 0.7, optimizer="momentum")
