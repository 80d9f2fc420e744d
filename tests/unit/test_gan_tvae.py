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
    assert generator.params["training_rows"] > 10_000  # failures repeated for training


def test_samples_keep_the_real_failure_rate_or_the_one_asked_for(generator) -> None:  # noqa: ANN001
    out = generator.sample(3000, seed=1)
    assert len(out) == 3000 and "UDI" not in out.columns
    assert int(out["Machine failure"].sum()) == round(3000 * generator.real_failure_rate)
    boosted = generator.sample(1000, failure_rate=0.2, seed=1)
    assert int(boosted["Machine failure"].sum()) == 200
    assert set(boosted["Type"]) <= {"L", "M", "H"}
    # Failures keep the real split over modes (first flagged mode per failure).
    real = generator.failure_strata
    got = generator.strata(out).value_counts().to_dict()
    want = generator.quotas(3000)
    assert {k: got.get(k, 0) for k in want} == want and sum(want.values()) == 3000
    assert set(want) - {"normal"} == set(real)
    fixed = generator.sample(500, mode_counts={"HDF": 40}, seed=2)
    assert int((generator.strata(fixed) == "HDF").sum()) == 40
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
    with pytest.raises(SamplingBudgetExceeded, match="rarely produces those failure rows"):
        c.sample(100, failure_rate=1.0, budget_factor=20, batch_rows=1000)


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
    p = r["privacy"]
    assert p["dcr_synthetic_median"] > 0 and p["dcr_holdout_median"] > 0 and p["exact_copies"] >= 0
    h = r["histograms"]["Torque [Nm]"]
    assert h["kind"] == "numeric" and sum(h["real"]) == len(train) and sum(h["synthetic"]) == len(train)
    assert r["evaluated_on"] == {"training_rows": len(train), "holdout_rows": len(holdout), "synthetic_rows": len(train)}
