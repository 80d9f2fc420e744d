"""Reading messy sensor files, inferring and checking schemas, profiling: pure domain code (ml/)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.settings import PROJECT_ROOT
from ml.expressions import Expression, ExpressionError
from ml.profile import profile
from ml.schema import DatasetSchema, SchemaError, infer_schema, validate_schema
from ml.tabular_io import TableError, read_table

AI4I = PROJECT_ROOT / "data" / "samples" / "ai4i2020.csv"


@pytest.fixture(scope="module")
def ai4i() -> pd.DataFrame:
    return read_table(AI4I)[0]


def test_ai4i_reads_with_names_and_types_intact(ai4i: pd.DataFrame) -> None:
    assert ai4i.shape == (10000, 14) and ai4i.columns[3] == "Air temperature [K]"
    assert ai4i["Machine failure"].sum() == 339 and ai4i["Torque [Nm]"].dtype == "float64"
    assert ai4i["Rotational speed [rpm]"].dtype == "int64" and ai4i["Type"].dtype == object


def _rows() -> list[list[str]]:
    with open(AI4I, newline="") as f:
        return list(csv.reader(f))


def test_european_export_bom_semicolons_decimal_commas_crlf(tmp_path: Path, ai4i: pd.DataFrame) -> None:
    text = "\r\n".join(";".join(c.replace(".", ",") for c in row) for row in _rows()) + "\r\n"
    (tmp_path / "eu.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    df, fmt = read_table(tmp_path / "eu.csv")
    assert fmt.describe()["delimiter"] == "semicolon" and fmt.decimal == "," and fmt.encoding == "utf-8-sig"
    assert list(df.columns) == list(ai4i.columns)
    assert np.allclose(df["Torque [Nm]"], ai4i["Torque [Nm]"])


def test_tabs_quoted_headers_and_windows_1252(tmp_path: Path) -> None:
    content = '"Zeit";"Temperatur [°C]";"Störung"\n1;20,5;0\n2;21,0;1\n'.replace(";", "\t")
    (tmp_path / "de.tsv").write_bytes(content.encode("cp1252"))
    df, fmt = read_table(tmp_path / "de.tsv")
    assert fmt.encoding == "cp1252" and fmt.delimiter == "\t"
    assert list(df.columns) == ["Zeit", "Temperatur [°C]", "Störung"] and df["Temperatur [°C]"].tolist() == [20.5, 21.0]


def test_utf16_and_parquet(tmp_path: Path, ai4i: pd.DataFrame) -> None:
    (tmp_path / "u16.csv").write_bytes("a,b\n1,2\n3,4\n".encode("utf-16"))
    assert read_table(tmp_path / "u16.csv")[0]["b"].tolist() == [2, 4]
    ai4i.head(50).to_parquet(tmp_path / "x.parquet")
    df, fmt = read_table(tmp_path / "x.parquet")
    assert fmt.kind == "parquet" and df.shape == (50, 14) and df.columns[4] == "Process temperature [K]"


@pytest.mark.parametrize("content, code", [
    (b"", "empty_file"),
    (b"   \n\n", "empty_file"),
    (b"a,b,c\r\n", "no_rows"),
    (b"a,b,a\n1,2,3\n", "duplicate_columns"),
    (b"a,,c\n1,2,3\n", "blank_column_name"),
    (b"a,b\n1,2\n3,4,5\n", "ragged_rows"),
    (bytes(range(256)) * 20, "undecodable"),
])
def test_broken_files_are_refused_precisely(tmp_path: Path, content: bytes, code: str) -> None:
    (tmp_path / "bad.csv").write_bytes(content)
    with pytest.raises(TableError) as exc:
        read_table(tmp_path / "bad.csv")
    assert exc.value.code == code and exc.value.message
    if code == "undecodable":
        assert "utf-8" in exc.value.message and "cp1252" in exc.value.message


def test_inferred_schema_keeps_labels_out_of_features(ai4i: pd.DataFrame) -> None:
    s = infer_schema(ai4i)
    assert s.target == "Machine failure"
    assert s.failure_modes == ["TWF", "HDF", "PWF", "OSF", "RNF"]  # RNF mostly fires without the target
    assert set(s.ignore) == {"UDI", "Product ID"} and s.categorical == ["Type"]
    assert s.columns["Torque [Nm]"].unit == "Nm"
    assert s.feature_columns(list(ai4i.columns)) == ["Type", "Air temperature [K]", "Process temperature [K]",
                                                    "Rotational speed [rpm]", "Torque [Nm]", "Tool wear [min]"]
    validate_schema(ai4i, s)


def test_given_roles_are_never_overridden(ai4i: pd.DataFrame) -> None:
    s = infer_schema(ai4i, DatasetSchema(target="HDF", ignore=["Type"]))
    assert s.target == "HDF" and "Type" in s.ignore and "Type" not in s.categorical


@pytest.mark.parametrize("given, field", [
    ({"target": "Type"}, "target"),
    ({"target": "Nope"}, "target"),
    ({"failure_modes": ["TWF", "XYZ"]}, "failure_modes"),
    ({"target": "TWF", "failure_modes": ["TWF"]}, "failure_modes"),
    ({"derived": {"power": "`Torque` * 2"}}, "derived.power"),
    ({"derived": {"UDI": "1 + 1"}}, "derived.UDI"),
    ({"columns": {"Nope": {"unit": "K"}}}, "columns.Nope"),
])
def test_bad_schemas_name_the_field(ai4i: pd.DataFrame, given: dict, field: str) -> None:
    with pytest.raises(SchemaError) as exc:
        validate_schema(ai4i, DatasetSchema(**given))
    assert exc.value.field == field


def test_all_nan_feature_is_refused() -> None:
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "dead sensor": [np.nan] * 3, "fail": [0, 1, 0]})
    with pytest.raises(SchemaError, match="dead sensor"):
        validate_schema(df, DatasetSchema(target="fail"))


def test_derived_power_expression(ai4i: pd.DataFrame) -> None:
    e = Expression("`Torque [Nm]` * `Rotational speed [rpm]` * 2 * pi / 60", list(ai4i.columns))
    power = e.evaluate(ai4i)
    expected = ai4i["Torque [Nm]"] * ai4i["Rotational speed [rpm]"] * 2 * np.pi / 60
    assert np.allclose(power, expected) and e.columns == ["Torque [Nm]", "Rotational speed [rpm]"]
    assert Expression("log(`Tool wear [min]`)").evaluate(ai4i).isna().sum() == (ai4i["Tool wear [min]"] == 0).sum()


@pytest.mark.parametrize("source", ['__import__("os").system("id")', "`Torque [Nm]`.real", "open('x')",
                                    "lambda: 1", "[1, 2]", "x + 1", "1 +", "sqrt(x=1)", "a if b else c"])
def test_expressions_refuse_anything_but_arithmetic(source: str) -> None:
    with pytest.raises(ExpressionError):
        Expression(source)


def test_profile_has_balance_modes_and_histograms(ai4i: pd.DataFrame) -> None:
    p = profile(ai4i, infer_schema(ai4i))
    assert p["rows"] == 10000
    assert p["class_balance"] == {"positives": 339, "negatives": 9661, "positive_rate": 0.0339}
    assert p["failure_modes"] == {"TWF": 46, "HDF": 115, "PWF": 95, "OSF": 98, "RNF": 19}
    torque = p["columns"]["Torque [Nm]"]
    assert torque["kind"] == "numeric" and torque["missing"] == 0 and sum(torque["histogram"]["counts"]) == 10000
    assert {t["value"] for t in p["columns"]["Type"]["top"]} == {"L", "M", "H"}


# ----------------------------------------------------------------------------------- chunks and limits
def test_chunked_reading_gives_the_whole_file_frame(tmp_path: Path, ai4i: pd.DataFrame,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 1,000 rows: each column gets the one type over the whole file (a column that is
    int in one chunk and float or missing in another is float64 everywhere)."""
    import ml.tabular_io as tio

    monkeypatch.setattr(tio, "CHUNK_CELLS", 14 * 1_000)
    pd.testing.assert_frame_equal(read_table(AI4I)[0], ai4i)
    rows = ["a,b,c"] + [f"{i},{i},x" for i in range(1500)] + ["1500,1.5,", "1501,,y"]
    (tmp_path / "mixed.csv").write_text("\n".join(rows) + "\n")
    df = read_table(tmp_path / "mixed.csv")[0]
    assert df["a"].dtype == "int64" and df["b"].dtype == "float64" and df["c"].dtype == object
    assert df["b"].iloc[1500] == 1.5 and np.isnan(df["b"].iloc[1501]) and df["c"].iloc[1500] is None


def test_streamed_profile_over_many_batches_matches_the_whole_frame(tmp_path: Path, ai4i: pd.DataFrame,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import ml.profile as mp
    from ml.datasets import ingest

    whole = profile(ai4i, infer_schema(ai4i))
    monkeypatch.setattr(mp, "PROFILE_BATCH_CELLS", 14 * 1_000)  # ten batches
    got = ingest(AI4I, tmp_path / "out.parquet")
    assert got.schema == infer_schema(ai4i) and got.rows == 10000
    for c, expected in whole["columns"].items():
        for k, v in expected.items():
            assert got.profile["columns"][c][k] == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v), (c, k)
    assert {k: v for k, v in got.profile.items() if k != "columns"} == {k: v for k, v in whole.items() if k != "columns"}


def test_the_row_sample_bounds_percentiles_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ml.profile as mp

    n = 300_000
    pd.DataFrame({"x": np.arange(n, dtype=float), "y": np.arange(n) % 2}).to_parquet(tmp_path / "t.parquet")
    monkeypatch.setattr(mp, "SAMPLE_CELLS", 20_000)  # 2 numeric columns: 10,000 rows
    t = mp.summarize_parquet(tmp_path / "t.parquet")
    p = mp.profile_summary(t, DatasetSchema(target="y"))
    assert p["sample"]["rows"] == len(t.sample) == 10_000  # bounded by the budget, and said so
    x = p["columns"]["x"]
    assert x["min"] == 0 and x["max"] == n - 1 and sum(x["histogram"]["counts"]) == n  # exact
    assert x["median"] == pytest.approx((n - 1) / 2, rel=0.02)  # from the sample
    assert p["class_balance"]["positives"] == n // 2


@pytest.mark.parametrize("content, code, setting", [
    (",".join(f"c{i}" for i in range(3000)).encode() + b"\n" + b"1," * 2999 + b"1\n", "too_many_columns",
     "DATASET_MAX_COLUMNS"),
    (b"a,b\n1," + b"x" * 20_000 + b"\n", "field_too_long", "MAX_FIELD_CHARS"),
    (b"a," + b"x" * 20_000 + b"\n1,2\n", "field_too_long", "MAX_FIELD_CHARS"),
    (b"a,b\n" + b"1,2\n" * 60_000, "too_many_cells", "DATASET_MAX_CELLS"),
    (b"a\x01,b\n1,2\n", "control_character", None),
    (b"a,b\n1,\x00\n", "nul_character", None),
])
def test_limits_and_control_characters(tmp_path: Path, content: bytes, code: str, setting: str | None) -> None:
    from ml.tabular_io import TableLimits, open_table

    (tmp_path / "f.csv").write_bytes(content)
    with pytest.raises(TableError) as exc:
        open_table(tmp_path / "f.csv", TableLimits(max_columns=2000, max_cells=100_000, max_field_chars=10_000))
    assert exc.value.code == code and exc.value.details.get("setting") == setting
    assert exc.value.status == (413 if code.startswith("too_many") else 422)


def test_formula_cells_are_escaped_numbers_are_not() -> None:
    from ml.csv_safety import escape_formulas

    df = pd.DataFrame({"n": [-1.5, 2.0, 3.0], "t": ["=1+1", "-1.5", "@x"], "u": ["ok", "+3", "-2+3"]})
    out = escape_formulas(df)
    assert out["n"].tolist() == [-1.5, 2.0, 3.0] and out["t"].tolist() == ["'=1+1", "-1.5", "'@x"]
    assert out["u"].tolist() == ["ok", "+3", "'-2+3"] and df["t"].iloc[0] == "=1+1"  # the input is not changed


def test_a_wide_csv_within_the_limits_is_read(tmp_path: Path) -> None:
    """1,999 columns make a 17,000-character line: longer than MAX_FIELD_CHARS as one field, which
    is how the line reads with a wrong candidate delimiter; the sniffer must not refuse it for that."""
    from ml.tabular_io import TableLimits

    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"col_{i}" for i in range(1999)) + "\n" + ",".join(["1"] * 1999) + "\n")
    df, fmt = read_table(path, TableLimits(max_columns=2000, max_field_chars=10_000))
    assert df.shape == (1, 1999) and fmt.delimiter == ","
