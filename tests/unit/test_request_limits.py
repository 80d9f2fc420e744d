"""Domain checks of what one request may cost (issue 12): TVAE configurations (GAN/limits.py),
stops inside a TVAE epoch and inside sampling, bounded sampling draws, and predict rows
(ml/online.py)."""

from __future__ import annotations

import pytest

from GAN.limits import TvaeConfigError, TvaeLimits, check_sample_rows, check_tvae_config, tvae_memory_mb
from ml.online import RowsInputError, scan_rows
from ml.schema import infer_schema
from tests.unit.test_gan_tvae import rare_event_table

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
LIMITS = TvaeLimits(max_layer=2048, max_epochs=10_000, max_batch=50_000, max_memory_mb=2048, max_sample_rows=1000)
DEFAULT = {"epochs": 300, "batch_size": 500, "embedding_dim": 128, "compress_dims": [128, 128],
           "decompress_dims": [128, 128]}


def _refused(**change: object) -> TvaeConfigError:
    with pytest.raises(TvaeConfigError) as info:
        check_tvae_config(**{**DEFAULT, **change}, limits=LIMITS)
    return info.value


def test_the_defaults_and_a_large_legal_model_pass() -> None:
    check_tvae_config(**DEFAULT, limits=LIMITS)
    check_tvae_config(**{**DEFAULT, "compress_dims": [2048] * 6, "decompress_dims": [2048] * 6}, limits=LIMITS)


@pytest.mark.parametrize(("change", "setting", "field", "value"), [
    ({"decompress_dims": [867513]}, "TVAE_MAX_LAYER", "body.decompress_dims[0]", 867513),
    ({"compress_dims": [64, 2049]}, "TVAE_MAX_LAYER", "body.compress_dims[1]", 2049),
    ({"embedding_dim": 4096}, "TVAE_MAX_LAYER", "body.embedding_dim", 4096),
    ({"epochs": 10_001}, "TVAE_MAX_EPOCHS", "body.epochs", 10_001),
    ({"batch_size": 60_000}, "TVAE_MAX_BATCH", "body.batch_size", 60_000),
])
def test_each_limit_names_its_setting_and_the_value(change: dict, setting: str, field: str, value: int) -> None:
    err = _refused(**change)
    assert err.is_limit and err.details == {"field": field, "setting": setting, "limit": getattr(
        LIMITS, {"TVAE_MAX_LAYER": "max_layer", "TVAE_MAX_EPOCHS": "max_epochs", "TVAE_MAX_BATCH": "max_batch"}[setting]),
        "value": value}
    assert setting in str(err) and f"{value:,}" in str(err)


@pytest.mark.parametrize("dims", [[-5], [0], [1], [64, 0], [True]])
def test_layers_need_two_units(dims: list) -> None:
    err = _refused(compress_dims=dims)
    assert not err.is_limit and err.details["field"] == f"body.compress_dims[{len(dims) - 1}]"


def test_widths_within_the_limit_can_still_multiply_past_the_memory_limit() -> None:
    wide = {"compress_dims": [2048] * 6, "decompress_dims": [2048] * 6}
    assert tvae_memory_mb(batch_size=500, embedding_dim=128, **wide) < 2048  # weights: ~0.8 GB
    err = _refused(**wide, batch_size=50_000)  # activations: batch x width, ~15 GB
    assert err.details["setting"] == "TVAE_MAX_MEMORY_MB" and err.details["value"] > 10_000
    # the estimate grows with width x width (weights) and batch x width (activations)
    one = tvae_memory_mb(batch_size=1000, embedding_dim=128, compress_dims=[512], decompress_dims=[512])
    assert tvae_memory_mb(batch_size=1000, embedding_dim=128, compress_dims=[512, 512], decompress_dims=[512]) > one
    assert tvae_memory_mb(batch_size=2000, embedding_dim=128, compress_dims=[512], decompress_dims=[512]) > one


def test_sample_rows_limit() -> None:
    check_sample_rows(1000, LIMITS)
    with pytest.raises(TvaeConfigError, match="GAN_MAX_SAMPLE_ROWS"):
        check_sample_rows(1001, LIMITS)


def test_train_tvae_checks_its_limits_before_anything_is_built() -> None:
    from GAN.tvae import train_tvae

    df = rare_event_table(200)
    with pytest.raises(TvaeConfigError, match="TVAE_MAX_LAYER"):
        train_tvae(df, infer_schema(df), epochs=1, decompress_dims=(867513,), limits=LIMITS)


def test_a_stop_ends_training_inside_the_first_epoch() -> None:
    from GAN.tvae import GanStopped, train_tvae

    df = rare_event_table(2000)
    schema = infer_schema(df).model_copy(update={"target": "failure", "failure_modes": ["OVERLOAD"]})
    asked, epochs_done = [], []

    def stop() -> bool:
        asked.append(1)
        return len(asked) >= 3

    with pytest.raises(GanStopped):  # 2000 rows in batches of 50: 40 steps per epoch
        train_tvae(df, schema, epochs=5, batch_size=50, seed=0, should_stop=stop,
                   progress=lambda f, m, x: epochs_done.append(x))
    assert len(asked) == 3 and epochs_done == []


@pytest.fixture(scope="module")
def quick() -> object:
    from GAN.tvae import train_tvae

    df = rare_event_table()
    schema = infer_schema(df).model_copy(update={"target": "failure", "failure_modes": ["OVERLOAD"]})
    return train_tvae(df, schema, epochs=1, batch_size=200, seed=0)  # barely trained: rarely makes failures


def test_sampling_stops_before_the_next_batch(quick: object) -> None:
    from GAN.tvae import GanStopped

    asked, drawn = [], []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 2

    with pytest.raises(GanStopped):
        quick.sample(100_000, failure_rate=1.0, batch_rows=500, should_stop=stop,
                     progress=lambda d, k: drawn.append(d))
    assert drawn == [0, 500] and len(asked) == 3


def test_sampling_draws_are_bounded_and_a_shortfall_is_reported(quick: object) -> None:
    from GAN.tvae import SamplingBudgetExceeded

    drawn: list[int] = []
    with pytest.raises(SamplingBudgetExceeded, match=r"after 1,000 generated rows .*any failure"):
        quick.sample(500, failure_rate=1.0, budget_factor=2, batch_rows=500, progress=lambda d, k: drawn.append(d))
    assert drawn == [0, 500]  # max(2 x 500 rows, 2 batches) = 1,000 generated, then the report


def test_sampling_without_a_target_is_batched_and_stoppable() -> None:
    from GAN.tvae import GanStopped, train_tvae

    df = rare_event_table(300).drop(columns=["failure", "OVERLOAD"])
    g = train_tvae(df, infer_schema(df), epochs=1, batch_size=100, seed=0)
    drawn: list[int] = []
    out = g.sample(1200, batch_rows=500, progress=lambda d, k: drawn.append(d))
    assert len(out) == 1200 and drawn == [0, 500, 1000]
    with pytest.raises(GanStopped):
        g.sample(1200, batch_rows=500, should_stop=lambda: True)


def test_predict_rows_are_counted_before_anything_is_built() -> None:
    with pytest.raises(RowsInputError) as info:
        scan_rows([{}] * 11, {"a"}, max_rows=10, max_keys=5)
    assert info.value.details == {"field": "body.rows", "setting": "MAX_PREDICT_ROWS", "limit": 10, "value": 11}
    wide = [{"a": 1}, {f"k{i}": 0 for i in range(50_000)}, {"never": [1]}]
    with pytest.raises(RowsInputError) as info:
        scan_rows(wide, {"a"}, max_rows=10, max_keys=5)
    assert info.value.code == "limit_exceeded" and info.value.details["setting"] == "MAX_PREDICT_KEYS"
    assert info.value.details["value"] > 5 and "row 1" in info.value.message  # stopped there: row 2 never read
    assert scan_rows([{"a": 1, "b": "x"}, {"c": None, "a": 2.5, "d": True}], {"a"}, max_rows=10, max_keys=5) == \
        ["b", "c", "d"]


@pytest.mark.parametrize(("value", "kind"), [([1, 2], "array"), ({"x": 1}, "object")])
def test_predict_values_must_be_scalars(value: object, kind: str) -> None:
    with pytest.raises(RowsInputError) as info:
        scan_rows([{"a": 1}, {"a": 1, "b": value}], {"a"}, max_rows=10, max_keys=5)
    assert info.value.details == {"field": "body.rows[1].b", "row": 1, "key": "b"} and kind in info.value.message
    with pytest.raises(RowsInputError, match="not a JSON object"):
        scan_rows([{"a": 1}, 3], {"a"}, max_rows=10, max_keys=5)
