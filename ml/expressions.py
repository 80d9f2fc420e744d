"""Safe arithmetic over columns for derived features, e.g. power = torque × speed × 2π/60.

    `Torque [Nm]` * `Rotational speed [rpm]` * 2 * pi / 60

Column names go in backticks (they may contain spaces, brackets, units). Allowed: numbers, `pi`,
`e`, + - * / ** %, unary minus, parentheses and the functions abs, sqrt, log, log1p, exp, min,
max, clip. The expression is parsed with `ast` and every node is checked against that list; it is
never passed to `eval`.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

_BACKTICK = re.compile(r"`([^`]+)`")
_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide,
    ast.Pow: np.power, ast.Mod: np.mod,
}
_FUNCS: dict[str, Callable[..., Any]] = {
    "abs": np.abs, "sqrt": np.sqrt, "log": np.log, "log1p": np.log1p, "exp": np.exp,
    "min": np.minimum, "max": np.maximum, "clip": np.clip,
}
_CONSTS = {"pi": math.pi, "e": math.e}
MAX_LENGTH = 500


class ExpressionError(ValueError):
    def __init__(self, message: str, expression: str) -> None:
        super().__init__(message)
        self.message, self.expression = message, expression


class Expression:
    """A parsed, checked expression; `columns` lists the columns it reads."""

    def __init__(self, source: str, known_columns: list[str] | None = None) -> None:
        if not source or len(source) > MAX_LENGTH:
            raise ExpressionError(f"expression must be 1..{MAX_LENGTH} characters", source)
        self.source = source
        self._names: dict[str, str] = {}

        def to_identifier(m: re.Match[str]) -> str:
            name = m.group(1)
            key = f"__c{len(self._names)}"
            for k, v in self._names.items():
                if v == name:
                    return k
            self._names[key] = name
            return key

        try:
            tree = ast.parse(_BACKTICK.sub(to_identifier, source), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"not a valid expression: {exc.msg} (put column names in `backticks`)", source) from exc
        self._tree = tree.body
        self._check(self._tree)
        self.columns = list(dict.fromkeys(self._names.values()))
        if known_columns is not None:
            missing = [c for c in self.columns if c not in known_columns]
            if missing:
                raise ExpressionError(f"unknown column(s) {', '.join(missing)}", source)

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self._check(node.operand)
        elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            pass
        elif isinstance(node, ast.Name):
            if node.id not in self._names and node.id not in _CONSTS:
                raise ExpressionError(f"unknown name {node.id!r}: put column names in `backticks`; "
                                      f"constants allowed: {', '.join(_CONSTS)}", self.source)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS \
                and not node.keywords:
            for a in node.args:
                self._check(a)
        else:
            raise ExpressionError(f"not allowed in an expression: {ast.dump(node)[:60]}; allowed are numbers, "
                                  f"`columns`, + - * / ** %, and {', '.join(_FUNCS)}", self.source)

    def evaluate(self, df: pd.DataFrame) -> pd.Series:
        def ev(node: ast.AST) -> Any:
            if isinstance(node, ast.BinOp):
                return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
            if isinstance(node, ast.UnaryOp):
                v = ev(node.operand)
                return -v if isinstance(node.op, ast.USub) else v
            if isinstance(node, ast.Constant):
                return float(node.value)
            if isinstance(node, ast.Name):
                if node.id in self._names:
                    return pd.to_numeric(df[self._names[node.id]], errors="coerce").astype("float64").to_numpy()
                return _CONSTS[node.id]
            if isinstance(node, ast.Call):
                return _FUNCS[node.func.id](*[ev(a) for a in node.args])  # type: ignore[union-attr]
            raise AssertionError("checked at parse time")

        with np.errstate(all="ignore"):
            values = np.asarray(ev(self._tree), dtype="float64")
        if values.ndim == 0:
            values = np.full(len(df), float(values))
        values[~np.isfinite(values)] = np.nan  # division by zero, log of 0: missing, not inf
        return pd.Series(values, index=df.index)
