"""RUL model quality on simulated turbofan-like fleets, against same-run baselines.

For each fleet (one operating condition, like the public FD001 set; six, like FD002):

1. A training fleet of `--units` run-to-failure histories and a separate test fleet of as many
   units whose histories stop 5-150 cycles before failure (the public test-set protocol), both
   from `ml.simulate` (different seeds, same "engine design").
2. Ours: `ml.rul.train_rul_model` (the code the `ml.train_rul` job runs) with the API defaults:
   rolling windows 5/10/20/40, RUL cap 125, LightGBM, 5-fold group CV by unit (its out-of-fold
   RMSE is printed too). Then one RUL per test unit from its partial history.
3. Baselines, same data, same run:
   - "current readings": LightGBM on the last row's raw readings and cycle only (no rolling
     windows, no per-condition normalisation, no sensor selection);
   - ours with the issue's example windows 5/10/20;
   - predicting the training target's mean.
4. Test RMSE and MAE against the true remaining life (not capped, as the public sets score it),
   and the NASA/PHM08 score summed over test units (late predictions cost more).

Simulated difficulty is our choice, so these figures are not comparable with published results on
real benchmarks; they compare methods on the same data. Run from the repository root:

    .venv/bin/python bench/rul_quality.py [--units 100] [--seed 0]

A JSON summary goes to bench/results/rul_quality-<UTC timestamp>.json (git-ignored) unless
--no-json. It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml.evaluation import nasa_scores  # noqa: E402
from ml.rul import make_regressor, rul_target, train_rul_model  # noqa: E402
from ml.schema import DatasetSchema  # noqa: E402
from ml.simulate import simulate_run_to_failure  # noqa: E402

SCHEMA = DatasetSchema(unit="unit", time="cycle")
CAP = 125


def score(truth: pd.DataFrame, pred: pd.Series) -> dict[str, float]:
    t = truth.set_index("unit")["rul"].astype(float)
    p = pred.reindex(t.index).astype(float)
    err = p - t
    return {"rmse": float(np.sqrt((err**2).mean())), "mae": float(err.abs().mean()),
            "nasa_score_sum": float(nasa_scores(t.to_numpy(), p.to_numpy()).sum())}


def last_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["unit", "cycle"]).groupby("unit").tail(1).set_index("unit")


def run_fleet(conditions: int, units: int, seed: int) -> dict[str, object]:
    train, _ = simulate_run_to_failure(units, conditions=conditions, seed=seed * 2 + 1)
    test, truth = simulate_run_to_failure(units, conditions=conditions, seed=seed * 2 + 2, truncate=True,
                                          unit_offset=100_000)
    out: dict[str, object] = {"conditions": conditions, "train_rows": len(train), "test_units": len(truth)}
    rows = []

    t0 = time.perf_counter()
    ours = train_rul_model(train, SCHEMA, rul_cap=CAP, windows=(5, 10, 20, 40), seed=seed)
    secs = time.perf_counter() - t0
    rows.append({"model": "ours: windows 5/10/20/40 (API default)", **score(truth, ours.predict_units(test)
                 .set_index("unit")["rul"]), "cv_rmse": ours.metrics["rmse"], "seconds": secs})

    t0 = time.perf_counter()
    small = train_rul_model(train, SCHEMA, rul_cap=CAP, windows=(5, 10, 20), seed=seed)
    secs = time.perf_counter() - t0
    rows.append({"model": "ours: windows 5/10/20", **score(truth, small.predict_units(test).set_index("unit")["rul"]),
                 "cv_rmse": small.metrics["rmse"], "seconds": secs})

    t0 = time.perf_counter()
    y = rul_target(train, SCHEMA, CAP)
    features = [c for c in train.columns if c not in ("unit",)]
    est = make_regressor("lightgbm", seed).fit(train[features].to_numpy(), y)
    last = last_rows(test)
    pred = pd.Series(np.clip(est.predict(last[features].to_numpy()), 0, CAP), index=last.index)
    rows.append({"model": "baseline: current readings only", **score(truth, pred), "cv_rmse": None,
                 "seconds": time.perf_counter() - t0})

    rows.append({"model": "baseline: training mean", **score(truth, pd.Series(float(y.mean()), index=last.index)),
                 "cv_rmse": None, "seconds": 0.0})
    out["results"] = rows
    out["dropped_sensors"] = ours.metrics["dropped_sensors"]
    out["operating_conditions_found"] = ours.metrics["operating_conditions"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-json", action="store_true")
    args = ap.parse_args()
    summary = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
               "python": platform.python_version(), "units": args.units, "seed": args.seed, "fleets": []}
    for conditions in (1, 6):
        fleet = run_fleet(conditions, args.units, args.seed)
        summary["fleets"].append(fleet)
        print(f"\n{conditions} operating condition(s): {fleet['train_rows']} training rows, {fleet['test_units']} test "
              f"units; conditions found {fleet['operating_conditions_found']}, dropped {fleet['dropped_sensors']}")
        print(f"  {'model':42} {'test RMSE':>9} {'MAE':>6} {'NASA sum':>9} {'CV RMSE':>8} {'time':>7}")
        for r in fleet["results"]:
            cv = f"{r['cv_rmse']:.2f}" if r["cv_rmse"] is not None else "-"
            print(f"  {r['model']:42} {r['rmse']:9.2f} {r['mae']:6.2f} {r['nasa_score_sum']:9.1f} {cv:>8} "
                  f"{r['seconds']:6.1f}s")
    if not args.no_json:
        out = ROOT / "bench" / "results" / f"rul_quality-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2))
        print(f"\nsummary: {out}")


if __name__ == "__main__":
    main()
