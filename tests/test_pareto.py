import numpy as np
import pandas as pd
import pytest

from compression.pareto import best_feasible, hypervolume, pareto_mask


def test_two_objectives_visible_answer():
    df = pd.DataFrame({"size": [1, 2, 3, 2], "acc": [0.7, 0.9, 0.8, 0.6]})
    assert pareto_mask(df, {"size": "min", "acc": "max"}).tolist() == [True, True, False, False]


def test_ties_are_all_kept_and_duplicates_do_not_dominate_each_other():
    df = pd.DataFrame({"size": [1, 1, 2], "acc": [0.8, 0.8, 0.8]})
    assert pareto_mask(df, {"size": "min", "acc": "max"}).tolist() == [True, True, False]


def test_three_objectives():
    # c is worse than a on size and latency but the most accurate: it stays; d is dominated by a.
    df = pd.DataFrame({"size": [10, 20, 30, 11], "lat": [5, 4, 9, 6], "acc": [0.80, 0.70, 0.90, 0.79]},
                      index=list("abcd"))
    m = pareto_mask(df, {"size": "min", "lat": "min", "acc": "max"})
    assert dict(zip(df.index, m)) == {"a": True, "b": True, "c": True, "d": False}


def test_missing_values_are_never_on_the_frontier():
    df = pd.DataFrame({"size": [1, np.nan], "acc": [0.5, 0.99]})
    assert pareto_mask(df, {"size": "min", "acc": "max"}).tolist() == [True, False]


def test_best_feasible_prefers_fastest_then_accuracy_then_size():
    df = pd.DataFrame({"size_mib": [80, 20, 30, 25], "lat_b1_p50_ms": [10, 5, 5, 3], "accuracy": [0.9, 0.8, 0.85, 0.6]})
    assert best_feasible(df, min_accuracy=0.7) == 2  # 1 and 2 tie on latency; 2 is more accurate
    assert best_feasible(df) == 3
    assert best_feasible(df, min_accuracy=0.95) is None
    assert best_feasible(df, max_size=22) == 1


def test_hypervolume_of_boxes():
    assert hypervolume(np.array([[0.5, 0.5]]), np.array([1.0, 1.0])) == 0.25
    # two boxes overlapping in a 0.25 x 0.25 corner: 0.5*0.75 + 0.75*0.5 - 0.5*0.5
    hv = hypervolume(np.array([[0.5, 0.25], [0.25, 0.5]]), np.array([1.0, 1.0]))
    assert abs(hv - (0.375 + 0.375 - 0.25)) < 1e-12
    assert hypervolume(np.array([[0.5, 0.5, 0.5]]), np.ones(3)) == 0.125
    assert hypervolume(np.array([[2.0, 0.1]]), np.ones(2)) == 0.0


def _mask_quadratic(df, objectives):
    """The first implementation: every row against every other (the reference for the fast one)."""
    c = np.column_stack([df[k].to_numpy(float) * (1 if d == "min" else -1) for k, d in objectives.items()])
    ok = ~np.isnan(c).any(axis=1)
    mask = np.zeros(len(df), dtype=bool)
    sub = c[ok]
    for k, i in enumerate(np.flatnonzero(ok)):
        mask[i] = not np.any(np.all(sub <= sub[k], axis=1) & np.any(sub < sub[k], axis=1))
    return mask


def _hypervolume_slicing(pts, ref):
    """The first hypervolume: slicing over every point, dominated ones included."""
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    pts = pts[np.argsort(pts[:, 0])]
    xs = np.append(pts[:, 0], ref[0])
    return sum((xs[i + 1] - xs[i]) * _hypervolume_slicing(pts[: i + 1, 1:], ref[1:]) for i in range(len(pts)))


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_the_fast_mask_equals_the_quadratic_one_on_random_tables_with_ties(d):
    rng = np.random.default_rng(d)
    names = ["a", "b", "c", "d"][:d]
    for trial in range(40):
        n = int(rng.integers(1, 60))
        # few distinct values, so ties, duplicates and equal coordinates are common; some anti-correlation
        x = rng.integers(0, 6, size=(n, d)).astype(float)
        if d > 1 and trial % 2:
            x[:, 1] = 5 - x[:, 0] + rng.integers(0, 2, size=n)
        x[rng.random((n, d)) < 0.05] = np.nan
        df = pd.DataFrame(x, columns=names, index=rng.permutation(n) * 3)
        objectives = {k: ("min" if i % 2 == 0 else "max") for i, k in enumerate(names)}
        assert pareto_mask(df, objectives).tolist() == _mask_quadratic(df, objectives).tolist()


@pytest.mark.parametrize("d", [2, 3])
def test_hypervolume_equals_the_slicing_one_on_random_points(d):
    rng = np.random.default_rng(10 + d)
    for _ in range(20):
        pts = rng.integers(0, 8, size=(int(rng.integers(1, 25)), d)) / 8
        ref = np.full(d, 0.9)
        assert hypervolume(pts, ref) == pytest.approx(_hypervolume_slicing(pts, ref), abs=1e-12)
