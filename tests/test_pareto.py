import numpy as np
import pandas as pd

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
