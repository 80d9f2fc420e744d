"""Failure-model training: features, cost threshold, CV protocol, and no label leakage (ml/)."""

from __future__ import annotations

import json
from itertools import product

import numpy as np
import pandas as pd
import pytest

from core.settings import PROJECT_ROOT
from ml.evaluation import binary_metrics, cost_threshold
from ml.features import FeatureBuilder
from ml.importance import feature_importance
from ml.schema import DatasetSchema, infer_schema
from ml.tabular_io import read_table
from ml.training import TrainingStopped, train_failure_model


@pytest.fixture(scope="module")
def ai4i() -> pd.DataFrame:
    return read_table(PROJECT_ROOT / "data" / "samples" / "ai4i2020.csv")[0]


def test_features_use_safe_names_map_back_and_never_read_labels(ai4i: pd.DataFrame) -> None:
    schema = infer_schema(ai4i).model_copy(update={"derived": {"power": "`Torque [Nm]` * `Rotational speed [rpm]`"}})
    fb = FeatureBuilder(schema).fit(ai4i)
    X = fb.transform(ai4i.head(100))
    assert list(X.columns) == [f"f{i}" for i in range(X.shape[1])] and len(fb.feature_names_) == X.shape[1]
    assert "Rotational speed [rpm] × Torque [Nm]" in fb.feature_names_ and "Type=L" in fb.feature_names_
    labels = {"Machine failure", "TWF", "HDF", "PWF", "OSF", "RNF", "UDI", "Product ID"}
    assert not labels & {c for src in fb.sources_ for c in src}
    assert len(fb.sources_) == len(fb.feature_names_)
    i = fb.feature_names_.index("power")
    assert np.allclose(X.iloc[:, i], ai4i["Torque [Nm]"].head(100) * ai4i["Rotational speed [rpm]"].head(100))


def test_categories_come_from_training_rows_only(ai4i: pd.DataFrame) -> None:
    schema = infer_schema(ai4i)
    fb = FeatureBuilder(schema, interactions=False).fit(ai4i[ai4i["Type"] != "H"])
    assert "Type=H" not in fb.feature_names_
    X = fb.transform(ai4i[ai4i["Type"] == "H"].head(5))
    cols = [fb.feature_names_.index(f"Type={t}") for t in ("L", "M")]
    assert (X.iloc[:, cols].to_numpy() == 0).all()  # an unseen level is no level, not an error


def test_cost_threshold_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.1).astype(int)
    p = np.clip(y * 0.4 + rng.random(400) * 0.6, 0, 1).round(2)  # ties on purpose
    for fa, miss in product([1, 3], [1, 10]):
        t, cost = cost_threshold(y, p, fa, miss)
        brute = min(fa * ((p >= c) & (y == 0)).sum() + miss * ((p < c) & (y == 1)).sum()
                    for c in np.r_[np.unique(p), 1.01])
        assert cost == brute
        pred = p >= t
        assert fa * (pred & (y == 0)).sum() + miss * (~pred & (y == 1)).sum() == brute
    m = binary_metrics(y, p, 0.5)
    assert set(m) >= {"f1", "precision", "recall", "pr_auc", "roc_auc", "balanced_accuracy", "brier",
                      "confusion_matrix", "threshold"}


def test_training_on_ai4i_reports_out_of_fold_metrics(ai4i: pd.DataFrame) -> None:
    seen: list[tuple[float, str]] = []
    model = train_failure_model(ai4i, infer_schema(ai4i), cv_folds=3, progress=lambda f, m: seen.append((f, m)))
    m = model.metrics
    assert 0.6 < m["f1"] < 0.99 and m["pr_auc"] > 0.75 and m["roc_auc"] > 0.95
    assert "3-fold stratified k-fold" in m["protocol"] and "out-of-fold" in m["protocol"]
    assert m["confusion_matrix"]["tp"] + m["confusion_matrix"]["fn"] == 339
    assert set(m["per_mode"]) == {"TWF", "HDF", "PWF", "OSF", "RNF"} and m["per_mode"]["HDF"]["detected_recall"] > 0.9
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1][0] == pytest.approx(1.0)
    ranking = [c["feature"] for c in m["feature_importance"]["by_column"]]
    assert set(ranking[:2]) == {"Torque [Nm]", "Rotational speed [rpm]"} and ranking[-1] == "Type"  # power, strain
    p = model.predict_proba(ai4i.head(20))
    assert p.shape == (20,) and ((p >= 0) & (p <= 1)).all()


def test_a_leaked_label_would_show_and_does_not(ai4i: pd.DataFrame) -> None:
    """If mode columns were features the score would be perfect: it must not be."""
    schema = infer_schema(ai4i)
    honest = train_failure_model(ai4i, schema, cv_folds=3, interactions=False).metrics["f1"]
    leaky_schema = DatasetSchema(target="Machine failure", categorical=["Type"], ignore=["UDI", "Product ID"])
    leaky = train_failure_model(ai4i, leaky_schema, cv_folds=3, interactions=False).metrics["f1"]
    assert leaky > 0.97 > honest  # the protocol detects leakage when it is there, and ours has none


def test_unit_grouped_folds_and_stop(ai4i: pd.DataFrame) -> None:
    df = ai4i.assign(machine=ai4i["UDI"] % 40)
    schema = infer_schema(df, DatasetSchema(unit="machine"))
    m = train_failure_model(df, schema, cv_folds=3, interactions=False)
    assert "group k-fold by 'machine'" in m.metrics["protocol"]
    with pytest.raises(TrainingStopped):
        train_failure_model(ai4i, infer_schema(ai4i), cv_folds=3, should_stop=lambda: True)


@pytest.mark.parametrize("algorithm", ["random_forest", "logistic_regression"])
def test_alternative_algorithms(ai4i: pd.DataFrame, algorithm: str) -> None:
    sample = pd.concat([ai4i[ai4i["Machine failure"] == 1], ai4i[ai4i["Machine failure"] == 0].head(1500)])
    m = train_failure_model(sample, infer_schema(sample), algorithm=algorithm, cv_folds=3).metrics
    assert m["pr_auc"] > 0.6 and m["threshold"] > 0


@pytest.mark.parametrize("algorithm", ["lightgbm", "random_forest"])
def test_fits_stop_between_trees_and_stepwise_forests_equal_one_fit(algorithm: str, ai4i: pd.DataFrame) -> None:
    from ml.fitting import FitStopped, fit_cancellable
    from ml.training import make_estimator

    X = FeatureBuilder(infer_schema(ai4i), interactions=False).fit_transform(ai4i.iloc[:2000]).fillna(0)
    y = ai4i["Machine failure"].iloc[:2000].to_numpy()
    calls = []

    def stop_on_third() -> bool:
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(FitStopped):
        fit_cancellable(make_estimator(algorithm, 0, float(y.mean())), X, y, stop_on_third)
    assert len(calls) == 3  # stopped inside the fit: after 3 boosting rounds / 3 batches of trees
    stepwise = fit_cancellable(make_estimator(algorithm, 0, float(y.mean())), X, y, lambda: False)
    whole = make_estimator(algorithm, 0, float(y.mean())).fit(X, y)
    np.testing.assert_allclose(stepwise.predict_proba(X), whole.predict_proba(X))


PHYSICAL = {"Torque [Nm]", "Rotational speed [rpm]", "Tool wear [min]", "Air temperature [K]",
            "Process temperature [K]"}


@pytest.fixture(scope="module")
def ai4i_small(ai4i: pd.DataFrame) -> pd.DataFrame:
    """Every failure and a random 1500 normal rows (random, not the first: air temperature drifts with
    UDI, so the first rows would make time look like a cause), without mode columns: few fits."""
    normal = ai4i[ai4i["Machine failure"] == 0].sample(1500, random_state=0)
    return pd.concat([ai4i[ai4i["Machine failure"] == 1], normal]).drop(columns=["TWF", "HDF", "PWF", "OSF", "RNF"])


@pytest.mark.parametrize("algorithm", ["lightgbm", "random_forest", "logistic_regression"])
def test_failure_models_record_feature_importance(ai4i_small: pd.DataFrame, algorithm: str) -> None:
    model = train_failure_model(ai4i_small, infer_schema(ai4i_small), algorithm=algorithm, cv_folds=2)
    fi = model.metrics["feature_importance"]
    assert json.loads(json.dumps(fi, allow_nan=False)) == fi and fi["method"]
    by_column = [c["importance"] for c in fi["by_column"]]
    assert all(type(v) is float and v >= 0 for v in by_column) and by_column == sorted(by_column, reverse=True)
    assert sum(by_column) == pytest.approx(1.0, abs=1e-6)
    b = model.builder
    assert [c["feature"] for c in fi["by_column"]] and {c["feature"] for c in fi["by_column"]} == {
        c for src in b.sources_ for c in src} == {*b.numeric_, *b.categorical_}  # no label, id or stray name
    assert len(fi["by_column"]) == len({c["feature"] for c in fi["by_column"]})
    top = [c["importance"] for c in fi["top_features"]]
    assert len(top) == 15 and top == sorted(top, reverse=True) and 0 < sum(top) <= 1 + 1e-6
    assert {c["feature"] for c in fi["top_features"]} <= set(b.feature_names_)
    # Failures follow torque, speed, wear and temperatures; the product type barely matters.
    ranking = [c["feature"] for c in fi["by_column"]]
    assert ranking[0] in PHYSICAL and ranking[-1] == "Type", ranking


def test_importance_is_credited_to_source_columns_and_guards_all_zero(ai4i: pd.DataFrame) -> None:
    from types import SimpleNamespace

    df = ai4i[["Torque [Nm]", "Rotational speed [rpm]", "Tool wear [min]", "Machine failure"]].head(200)
    b = FeatureBuilder(infer_schema(df)).fit(df)
    gains = np.zeros(len(b.feature_names_))
    gains[b.feature_names_.index("Torque [Nm] × Rotational speed [rpm]")] = 3.0
    gains[b.feature_names_.index("Tool wear [min]")] = 1.0
    fi = feature_importance("random_forest", SimpleNamespace(feature_importances_=gains), b)
    assert fi["by_column"] == [{"feature": "Torque [Nm]", "importance": 0.375},
                               {"feature": "Rotational speed [rpm]", "importance": 0.375},
                               {"feature": "Tool wear [min]", "importance": 0.25}]
    assert fi["top_features"][:2] == [{"feature": "Torque [Nm] × Rotational speed [rpm]", "importance": 0.75},
                                      {"feature": "Tool wear [min]", "importance": 0.25}]
    zero = feature_importance("random_forest", SimpleNamespace(feature_importances_=gains * 0), b)
    assert {c["importance"] for c in zero["by_column"]} == {0.0} and len(zero["by_column"]) == 3
    with pytest.raises(ValueError):
        feature_importance("random_forest", SimpleNamespace(feature_importances_=gains[:-1]), b)
