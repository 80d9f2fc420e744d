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
