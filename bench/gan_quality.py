"""TVAE generator quality on AI4I: the platform's generator against a plain SDV fit, same run.

1. AI4I (data/samples/ai4i2020.csv) is split 80/20, stratified by the failure label (seed 0); both
   generators learn from the same 80 %, and the 20 % is the real holdout for TSTR and privacy.
2. Plain SDV: `TVAESynthesizer(metadata, epochs, batch_size)` on the 80 % with the same columns
   ours models (ids UDI / Product ID dropped: one-hot encoding 10,000 product ids would make the
   baseline slower and the comparison unfair), metadata detected, timed; then `sample(len(train))`.
3. Ours: `GAN.tvae.train_tvae` (what the `gan.train_tvae` job runs: ids left out, failure rows
   repeated for training), timed; then failure-aware `sample(len(train))`.
4. The same report for both (`GAN.report.evaluate`'s pieces): SDMetrics quality, failure rate
   overall and per mode vs real, TSTR F1 ratio, distance to closest record and exact copies.
   Wall time: the fit and the fit + sample + report, each against the plain fit.

Targets (issue 4): quality ≥ 0.90; failure rate within ±10 % (relative) of real, HDF/PWF/OSF
within ±25 %; TSTR F1 ratio ≥ 0.85; 0 exact copies; our time ≤ 1.15 × the plain SDV fit.

    .venv/bin/python bench/gan_quality.py [--epochs 300] [--batch-size 500]

A JSON summary goes to bench/results/gan_quality-<UTC timestamp>.json unless --no-json.
It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

from GAN.report import _privacy, _rates, _sdmetrics, _tstr  # noqa: E402
from GAN.tvae import TABLE, synthetic_schema, train_tvae  # noqa: E402
from ml.schema import infer_schema  # noqa: E402
from ml.tabular_io import read_table  # noqa: E402

MODES = ("HDF", "PWF", "OSF")


def judge(name: str, synth: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, columns: list[str],
          metadata: dict, schema, seed: int) -> dict:  # noqa: ANN001
    s = synthetic_schema(schema, columns)
    real_rates, syn_rates = _rates(train, s), _rates(synth, s)
    rel = {m: (syn_rates["modes"][m] / real_rates["modes"][m] - 1) for m in MODES}
    return {"name": name,
            "quality": _sdmetrics(train[columns].reset_index(drop=True), synth[columns], metadata)["overall"],
            "failure_rate_real": real_rates["overall"], "failure_rate_synthetic": syn_rates["overall"],
            "failure_rate_rel_error": syn_rates["overall"] / real_rates["overall"] - 1,
            "mode_rel_error": rel, "tstr": _tstr(synth[columns], train[columns], holdout[columns], s, seed),
            "privacy": _privacy(synth, train, holdout, columns, seed)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--failure-share", type=float, default=None, help="share of rare-event rows per training epoch "
                    "(default: the platform's)")
    ap.add_argument("--no-json", action="store_true")
    args = ap.parse_args()
    from sdv.metadata import Metadata
    from sdv.single_table import TVAESynthesizer
    from sklearn.model_selection import train_test_split

    df = read_table(ROOT / "data" / "samples" / "ai4i2020.csv")[0]
    schema = infer_schema(df)
    train, holdout = train_test_split(df, test_size=0.2, stratify=df[schema.target], random_state=args.seed)
    print(f"AI4I: {len(train)} training rows, {len(holdout)} holdout; epochs {args.epochs}, batch {args.batch_size}; "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, python {platform.python_version()}")

    import numpy as np
    import torch

    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    from GAN.tvae import modelled_columns

    plain_train = train[modelled_columns(train, schema)]
    meta = Metadata.detect_from_dataframes({TABLE: plain_train})
    plain = TVAESynthesizer(meta, epochs=args.epochs, batch_size=args.batch_size)
    t0 = time.perf_counter()
    plain.fit({TABLE: plain_train})
    plain_fit = time.perf_counter() - t0
    out = plain.sample(num_rows=len(train))
    plain_synth = out[TABLE] if isinstance(out, dict) else out
    print(f"plain SDV fit {plain_fit:.1f} s")

    t0 = time.perf_counter()
    extra = {} if args.failure_share is None else {"failure_share": args.failure_share}
    gen = train_tvae(train, schema, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, **extra)
    ours_fit = time.perf_counter() - t0
    ours_synth = gen.sample(len(train), seed=args.seed)
    ours_total = time.perf_counter() - t0
    print(f"ours fit {ours_fit:.1f} s (training rows {gen.params['training_rows']}), fit + sample {ours_total:.1f} s")

    columns = gen.columns
    ours_meta = gen.synthesizer.get_metadata().to_dict()
    rows = [judge("plain SDV TVAE", plain_synth, train, holdout, columns, ours_meta, schema, args.seed),
            judge("ours", ours_synth, train, holdout, columns, ours_meta, schema, args.seed)]
    print(f"\n{'':16} {'quality':>8} {'fail rate':>10} {'rel err':>8} "
          + " ".join(f"{m + ' err':>8}" for m in MODES) + f" {'TSTR F1 ratio':>13} {'(F1 thr)':>8} {'copies':>7} {'DCR med':>8}")
    for r in rows:
        t = r["tstr"] or {}
        print(f"{r['name']:16} {r['quality']:8.3f} {r['failure_rate_synthetic']:10.4f} {r['failure_rate_rel_error']:+8.1%} "
              + " ".join(f"{r['mode_rel_error'][m]:+8.1%}" for m in MODES)
              + f" {t.get('ratio') or 0:13.2f} {t.get('ratio_at_f1_threshold') or 0:8.2f} {r['privacy']['exact_copies']:7d} {r['privacy']['dcr_synthetic_median']:8.3f}")
    print(f"real failure rate {rows[0]['failure_rate_real']:.4f}; holdout DCR median "
          f"{rows[1]['privacy']['dcr_holdout_median']:.3f}")
    print(f"time: ours fit {ours_fit:.1f} s = {ours_fit / plain_fit:.2f} x plain fit {plain_fit:.1f} s "
          f"(fit + failure-aware sample {ours_total / plain_fit:.2f} x); target <= 1.15")
    if not args.no_json:
        path = ROOT / "bench" / "results" / f"gan_quality-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"args": vars(args), "plain_fit_s": plain_fit, "ours_fit_s": ours_fit,
                                    "ours_fit_sample_s": ours_total, "results": rows}, indent=2, default=str))
        print(f"summary: {path}")


if __name__ == "__main__":
    main()
