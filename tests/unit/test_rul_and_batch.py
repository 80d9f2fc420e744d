"""RUL models on simulated run-to-failure data, and chunked batch scoring (pure Python, no services)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.batch import BatchInputError, score_frame, score_parquet
from ml.evaluation import nasa_scores
from ml.rul import RulFeatureBuilder, RulStopped, rul_target, train_rul_model
from ml.schema import DatasetSchema, infer_schema
from ml.simulate import simulate_run_to_failure
from ml.training import train_failure_model
from tests.unit.test_failure_training import ai4i  # noqa: F401 - fixture

SCHEMA = DatasetSchema(unit="unit", time="cycle")


@pytest.fixture(scope="module")
def fleet() -> pd.DataFrame:
    return simulate_run_to_failure(30, conditions=6, seed=1)[0]


@pytest.fixture(scope="module")
def rul_model(fleet: pd.DataFrame):  # noqa: ANN201
    return train_rul_model(fleet, SCHEMA, windows=(5, 10, 20), cv_folds=3)


def test_simulator_is_reproducible_and_truncates_like_the_public_test_sets() -> None:
    a, _ = simulate_run_to_failure(5, seed=3)
    b, _ = simulate_run_to_failure(5, seed=3)
    pd.testing.assert_frame_equal(a, b)
    test, truth = simulate_run_to_failure(20, seed=4, truncate=True)
    assert truth["rul"].between(5, 150).all()
    last = test.groupby("unit")["cycle"].max()
    assert (last.to_numpy() + truth.set_index("unit")["rul"].loc[last.index].to_numpy()
            == truth.set_index("unit")["life"].loc[last.index].to_numpy()).all()


def test_schema_inference_finds_unit_and_time() -> None:
    fleet, _ = simulate_run_to_failure(3, seed=0)
    s = infer_schema(fleet)
    assert s.unit == "unit" and s.time == "cycle"


def test_target_is_time_to_last_record_capped() -> None:
    df = pd.DataFrame({"unit": [1, 1, 1, 2, 2], "cycle": [1, 2, 3, 1, 2], "x": [0.0] * 5})
    assert rul_target(df, SCHEMA, None).tolist() == [2, 1, 0, 1, 0]
    assert rul_target(df, SCHEMA, 1).tolist() == [1, 1, 0, 1, 0]
    given = DatasetSchema(unit="unit", time="cycle", rul="r")
    assert rul_target(df.assign(r=[9, 8, 7, 6, 5]), given, 7).tolist() == [7, 7, 7, 6, 5]


def test_conditions_found_and_constant_sensors_dropped(fleet: pd.DataFrame) -> None:
    b = RulFeatureBuilder(SCHEMA).fit(fleet)
    assert b.n_conditions_ == 6
    assert set(b.dropped_) == {"s1", "s5", "s10", "s16", "s18", "s19"}  # they only follow the condition
    assert b.settings_ == ["setting_1", "setting_2", "setting_3"]


def test_features_never_look_ahead(fleet: pd.DataFrame) -> None:
    """A row's features are the same whether or not the unit's later rows exist, or what they hold."""
    b = RulFeatureBuilder(SCHEMA, windows=(5, 20)).fit(fleet)
    full = b.transform(fleet)
    cut = fleet[fleet["cycle"] <= 60]
    changed_future = fleet.copy()
    later = changed_future["cycle"] > 60
    changed_future.loc[later, "s2"] = changed_future.loc[later, "s2"] * 10  # wild future readings
    np.testing.assert_allclose(b.transform(cut).to_numpy(), full.loc[cut.index].to_numpy(), rtol=1e-7, atol=1e-5)
    np.testing.assert_allclose(b.transform(changed_future).loc[cut.index].to_numpy(), full.loc[cut.index].to_numpy(),
                               rtol=1e-7, atol=1e-5)
    shuffled = fleet.sample(frac=1.0, random_state=0)  # row order in the file does not matter
    np.testing.assert_allclose(b.transform(shuffled).loc[fleet.index].to_numpy(), full.to_numpy(), rtol=1e-7, atol=1e-5)


def test_rul_model_learns_degradation_and_reports_its_protocol(rul_model) -> None:  # noqa: ANN001
    m = rul_model.metrics
    assert {"rmse", "mae", "nasa_score", "protocol", "curves", "units"} <= set(m)
    assert "group k-fold by 'unit'" in m["protocol"] and m["units"] == 30
    # Predicting the mean of a capped target is ~45 cycles RMSE here; a model that learned something is far below.
    assert m["rmse"] < 30 and m["mae"] < m["rmse"]
    assert m["curves"]["error_by_rul"][0]["rul_from"] == 0


def test_partial_histories_predict_one_rul_per_unit(rul_model) -> None:  # noqa: ANN001
    test, truth = simulate_run_to_failure(10, conditions=6, seed=7, truncate=True, unit_offset=500)
    per_unit = rul_model.predict_units(test.sample(frac=1.0, random_state=1))
    assert per_unit["unit"].nunique() == 10 and (per_unit["rul"].between(0, 125)).all()
    err = per_unit.set_index("unit")["rul"] - truth.set_index("unit")["rul"].clip(upper=125)
    assert np.sqrt((err**2).mean()) < 40
    rows = rul_model.predict_rows(test)
    last = test.assign(p=rows).groupby("unit").tail(1).set_index("unit")["p"]
    np.testing.assert_allclose(per_unit.set_index("unit")["rul"].loc[last.index], last)


def test_rul_training_validates_and_stops(fleet: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="schema.unit and schema.time"):
        train_rul_model(fleet, DatasetSchema(), cv_folds=3)
    with pytest.raises(ValueError, match="only 3 units"):
        train_rul_model(fleet[fleet["unit"] <= 3], SCHEMA, cv_folds=5)
    with pytest.raises(RulStopped):
        train_rul_model(fleet, SCHEMA, cv_folds=3, should_stop=lambda: True)


def test_nasa_score_penalises_late_predictions_more() -> None:
    late, early = nasa_scores(np.array([50.0]), np.array([60.0]))[0], nasa_scores(np.array([50.0]), np.array([40.0]))[0]
    assert late == pytest.approx(np.e - 1) and early == pytest.approx(np.expm1(10 / 13)) and late > early


def test_batch_rul_scoring_in_small_chunks_matches_whole_frame(rul_model, fleet: pd.DataFrame, tmp_path) -> None:  # noqa: ANN001
    src, dst = tmp_path / "in.parquet", tmp_path / "out.parquet"
    fleet.to_parquet(src, index=False)
    res = score_parquet(rul_model, src, dst, chunk_rows=1_000)  # units straddle chunk borders
    assert res.rows == len(fleet) and res.chunks == -(-len(fleet) // 1000) and res.peak_rss_mb > 0
    out = pd.read_parquet(dst)
    assert list(out.columns) == [*fleet.columns, "predicted_rul"]
    np.testing.assert_allclose(out["predicted_rul"], rul_model.predict_rows(fleet), rtol=1e-7, atol=1e-5)


def test_batch_rul_refuses_rows_out_of_time_order_across_chunks(rul_model, fleet: pd.DataFrame, tmp_path) -> None:  # noqa: ANN001
    src = tmp_path / "in.parquet"
    fleet.iloc[::-1].to_parquet(src, index=False)
    with pytest.raises(BatchInputError, match="sort it by 'unit' then 'cycle'"):
        score_parquet(rul_model, src, tmp_path / "out.parquet", chunk_rows=1_000)


def test_batch_failure_scoring_matches_the_model(ai4i: pd.DataFrame, tmp_path) -> None:  # noqa: F811, ANN001
    sample = ai4i.iloc[:3000]
    model = train_failure_model(sample, infer_schema(sample), cv_folds=3)
    src, dst = tmp_path / "in.parquet", tmp_path / "out.parquet"
    sample.assign(**{"Torque [Nm]": sample["Torque [Nm]"].astype(str).where(sample.index != 5, "n/a")}).to_parquet(
        src, index=False)
    res = score_parquet(model, src, dst, chunk_rows=1_000)
    out = pd.read_parquet(dst)
    expected = score_frame(model, sample.assign(**{"Torque [Nm]": sample["Torque [Nm]"].where(sample.index != 5)}))
    np.testing.assert_allclose(out["predicted_failure_probability"], expected["predicted_failure_probability"])
    assert out["predicted_failure"].dtype == bool and "predicted_TWF_probability" in out.columns
    assert res.coerced_values == {"Torque [Nm]": 1}
    with pytest.raises(BatchInputError, match="lacks column"):
        sample.drop(columns=["Torque [Nm]"]).to_parquet(src, index=False)
        score_parquet(model, src, dst)
