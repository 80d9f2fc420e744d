"""TVAE generators (GAN/): per-epoch progress and stop, failure-aware sampling, reproducibility."""

from __future__ import annotations

import pandas as pd
import pytest

from core.settings import PROJECT_ROOT
from GAN.tvae import GanStopped, SamplingBudgetExceeded, train_tvae
from ml.schema import infer_schema
from ml.tabular_io import read_table

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def ai4i() -> pd.DataFrame:
    return read_table(PROJECT_ROOT / "data" / "samples" / "ai4i2020.csv")[0]


@pytest.fixture(scope="module")
def split(ai4i: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    return tuple(train_test_split(ai4i, test_size=0.2, stratify=ai4i["Machine failure"], random_state=0))


@pytest.fixture(scope="module")
def generator(split: tuple[pd.DataFrame, pd.DataFrame]):  # noqa: ANN201
    seen: list[dict] = []
    train = split[0]
    g = train_tvae(train, infer_schema(train), epochs=30, seed=0, progress=lambda f, m, x: seen.append(x))
    g.test_progress = seen
    return g


def test_every_epoch_reports_its_loss_and_ids_are_left_out(generator) -> None:  # noqa: ANN001
    assert [x["epoch"] for x in generator.test_progress] == list(range(1, 31))
    assert len(generator.loss_curve) == 30 and all(isinstance(v, float) for v in generator.loss_curve)
    assert generator.params["columns_left_out"] == ["UDI", "Product ID"]
    assert generator.params["training_rows"] == 8000  # failure emphasis adds no rows to an epoch
    assert generator.params["failure_copies_per_epoch"] == 7


def test_samples_keep_the_real_failure_rate_or_the_one_asked_for(generator) -> None:  # noqa: ANN001
    report: dict = {}
    out = generator.sample(3000, seed=1, report=report)
    assert len(out) == 3000 and "UDI" not in out.columns
    assert int(out["Machine failure"].sum()) == round(3000 * generator.real_failure_rate)
    boosted = generator.sample(1000, failure_rate=0.2, seed=1)
    assert int(boosted["Machine failure"].sum()) == 200
    assert set(boosted["Type"]) <= {"L", "M", "H"}
    # Every label combination keeps its real share (rare ones pooled), so each mode's count does
    # too; a combination this 30-epoch generator never produces is substituted and reported.
    got = generator.pooled(out).value_counts().to_dict()
    want, substituted = report["quotas"], report["substituted"]
    assert want == generator.quotas(3000) and sum(want.values()) == 3000
    assert {"normal", "HDF", "PWF", "OSF", "TWF", "normal+RNF", "other failures"} <= set(want)
    for k in want:
        if k not in substituted:
            assert got.get(k, 0) >= want[k], k  # substituted rows may land here
    real = pd.Series(generator.failure_strata)
    for mode in ("HDF", "PWF", "OSF"):
        share = real[[k for k in real.index if mode in k.split("+")]].sum() / real.sum()
        assert abs(int(out[mode].sum()) - 3000 * share) <= 4 + sum(substituted.values()), mode
    assert set(generator.strata(out)) <= set(real.index)  # no label combination the real data lacks
    fixed = generator.sample(500, mode_counts={"HDF": 40}, seed=2)
    assert int(fixed["HDF"].sum()) == 40
    with pytest.raises(ValueError, match="unknown failure mode"):
        generator.sample(10, mode_counts={"XYZ": 1})
    pd.testing.assert_frame_equal(out, generator.sample(3000, seed=1))  # same seed, same rows
    with pytest.raises(ValueError, match="failure_rate"):
        generator.sample(10, failure_rate=1.5)


def test_training_stops_within_one_epoch_and_is_reproducible(ai4i: pd.DataFrame) -> None:
    small = ai4i.iloc[:1500]
    epochs: list[int] = []
    with pytest.raises(GanStopped):
        train_tvae(small, infer_schema(small), epochs=50, progress=lambda f, m, x: epochs.append(x["epoch"]),
                   should_stop=lambda: len(epochs) >= 2)
    assert epochs == [1, 2]
    a = train_tvae(small, infer_schema(small), epochs=2, seed=7)
    b = train_tvae(small, infer_schema(small), epochs=2, seed=7)
    assert a.loss_curve == b.loss_curve
    pd.testing.assert_frame_equal(a.sample(200, failure_rate=0.0, seed=1), b.sample(200, failure_rate=0.0, seed=1))
    healthy = ai4i[ai4i["Machine failure"] == 0].iloc[:1000]  # a generator that has never seen a failure
    c = train_tvae(healthy, infer_schema(ai4i), epochs=1)
    with pytest.raises(ValueError, match="without failure rows"):
        c.sample(100, failure_rate=1.0)


def test_report_measures_quality_rates_tstr_and_privacy_against_a_holdout(generator, split) -> None:  # noqa: ANN001
    import json

    from GAN.report import evaluate

    train, holdout = split
    r = evaluate(generator, train, holdout, infer_schema(train))
    json.dumps(r, allow_nan=False)  # storable as is
    q = r["quality"]
    assert 0.5 < q["overall"] <= 1 and set(q["columns"]) == set(generator.columns)
    assert q["column_shapes"] is not None and q["column_pair_trends"] is not None and q["diagnostic"]["overall"] > 0.9
    assert r["failure_rate"]["synthetic"]["overall"] == pytest.approx(r["failure_rate"]["real"]["overall"], abs=1e-3)
    assert set(r["failure_rate"]["synthetic"]["modes"]) == {"TWF", "HDF", "PWF", "OSF", "RNF"}
    t = r["tstr"]
    assert 0 < t["f1_real"] <= 1 and 0 < t["pr_auc_real"] <= 1 and t["ratio"] == pytest.approx(t["f1_synthetic"] / t["f1_real"])
    assert 0 < t["f1_at_f1_threshold_real"] <= 1 and t["ratio_at_f1_threshold"] == pytest.approx(
        t["f1_at_f1_threshold_synthetic"] / t["f1_at_f1_threshold_real"])
    p = r["privacy"]
    assert p["dcr_synthetic_median"] > 0 and p["dcr_holdout_median"] > 0 and p["exact_copies"] >= 0
    h = r["histograms"]["Torque [Nm]"]
    assert h["kind"] == "numeric" and sum(h["real"]) == len(train) and sum(h["synthetic"]) == len(train)
    assert r["evaluated_on"] == {"training_rows": len(train), "holdout_rows": len(holdout), "synthetic_rows": len(train)}


def rare_event_table(rows: int = 3000, seed: int = 3) -> pd.DataFrame:
    """A small plant table where 3-4 % of rows fail, and only under high load."""
    import numpy as np

    rng = np.random.default_rng(seed)
    load = rng.normal(50, 10, rows)
    df = pd.DataFrame({"temperature [K]": rng.normal(300, 2, rows).round(1), "load [kN]": load.round(2),
                       "vibration [mm/s]": (1 + 0.01 * (load - 50) + rng.normal(0, 0.1, rows)).round(3),
                       "line": rng.choice(["A", "B"], rows)})
    df["failure"] = (load > 68).astype(int)
    df["OVERLOAD"] = df["failure"]
    return df


def test_a_small_rare_event_table_keeps_its_failures_and_where_they_happen() -> None:
    df = rare_event_table()
    schema = infer_schema(df).model_copy(update={"target": "failure", "failure_modes": ["OVERLOAD"]})
    real_rate = df["failure"].mean()
    assert 0.02 < real_rate < 0.05
    g = train_tvae(df, schema, epochs=60, batch_size=200, seed=0)
    out = g.sample(2000, seed=0)
    assert int(out["failure"].sum()) == round(2000 * real_rate) and (out["OVERLOAD"] == out["failure"]).all()
    # The failures are not just labels: they sit where real failures do (high load).
    failed, normal = out[out["failure"] == 1], out[out["failure"] == 0]
    assert failed["load [kN]"].mean() > normal["load [kN]"].mean() + normal["load [kN]"].std()
    boosted = g.sample(500, failure_rate=0.5, seed=0)
    assert int(boosted["failure"].sum()) == 250
    quick = train_tvae(df, schema, epochs=1, batch_size=200, seed=0)  # barely trained: rarely makes failures
    with pytest.raises(SamplingBudgetExceeded, match="failure"):
        quick.sample(500, failure_rate=1.0, budget_factor=2, batch_rows=500)


def test_quotas_keep_named_modes_exact_and_say_when_a_mode_never_occurs_alone() -> None:
    from GAN.tvae import TvaeGenerator

    g = TvaeGenerator(synthesizer=None, columns=[], schema={"target": "failure"}, real_failure_rate=0.05,
                      real_mode_rates={"A": 0.0, "B": 0.0, "C": 0.0}, params={},
                      failure_strata={"normal": 9500, "A": 300, "B": 150, "A+B": 3, "C": 2, "A+C": 45})
    q = g.quotas(1000, failure_rate=0.5)
    assert sum(q.values()) == 1000 and q["other failures"] == 5 and "A+B" not in q  # rare ones pooled
    q = g.quotas(1000, failure_rate=0.5, mode_counts={"B": 10})
    assert q["B"] + q.get("A+B", 0) == 10 and q["other failures"] == 3  # only C is pooled now: A+B carries B
    q = g.quotas(1000, mode_counts={"A": 40, "B": 7})
    assert "A+B" not in q and q["B"] == 7 and q["A"] + q.get("A+C", 0) == 40  # A+B carries both: left out
    with pytest.raises(ValueError, match="never occurs in the real data without"):
        TvaeGenerator(synthesizer=None, columns=[], schema={"target": "failure"}, real_failure_rate=0.05,
                      real_mode_rates={"A": 0.0, "B": 0.0}, params={},
                      failure_strata={"normal": 9000, "A": 300, "A+B": 30}).quotas(1000, mode_counts={"A": 5, "B": 5})


def test_tiny_samples_have_room_to_substitute(generator) -> None:  # noqa: ANN001
    report: dict = {}
    out = generator.sample(10, seed=3, failure_rate=0.3, report=report)  # budget 2 batches, not 200 x 10 rows
    assert len(out) == 10 and int(out["Machine failure"].sum()) == 3
    assert report["generated_rows"] <= 20_000
