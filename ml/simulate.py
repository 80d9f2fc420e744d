"""Simulated run-to-failure histories for developing and testing RUL models (turbofan-like).

No public run-to-failure data ships with the platform, so RUL models are developed and tested on
data simulated here. Each unit starts with its own initial wear and manufacturing offsets, then
degrades along an exponential curve of its own shape until its health index reaches the failure
threshold; every cycle it runs at one of several operating conditions (three setting columns),
which move the sensors far more than wear does, as in real fleets. Sensors respond to wear with
their own sign, strength and curvature; some respond not at all and some are constant, as in real
data. Readings carry measurement noise.

`simulate_run_to_failure(..., truncate=True)` cuts every history at a random cycle before failure
and returns the true remaining life at the cut, the protocol of the public turbofan test sets.

The difficulty of simulated data is a choice (noise, unit-to-unit spread), so RMSE on it is not
comparable with published figures on real benchmarks; it is what tests and benchmarks here use to
check that the pipeline learns degradation, never looks ahead and is evaluated by unit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Operating conditions (altitude in kft, Mach, throttle resolver angle), like the public turbofan sets.
CONDITIONS = np.array([[0.0, 0.0, 100.0], [10.0, 0.25, 100.0], [20.0, 0.70, 100.0],
                       [25.0, 0.62, 60.0], [35.0, 0.84, 100.0], [42.0, 0.84, 100.0]])
N_SENSORS = 21
CONSTANT_SENSORS = (1, 5, 10, 16, 18, 19)  # respond only to the operating condition
FLAT_SENSORS = (6,)  # noise only


def _sensor_model(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = N_SENSORS
    base = rng.uniform(5.0, 2000.0, size=n)
    # How strongly each sensor's level depends on the operating condition (dominates wear).
    cond_effect = rng.normal(0.0, 0.08, size=(len(CONDITIONS), n)) * base
    gain = rng.choice([-1.0, 1.0], size=n) * rng.uniform(0.004, 0.02, size=n) * base
    curvature = rng.uniform(1.0, 2.5, size=n)
    noise = rng.uniform(0.25, 0.6, size=n) * np.abs(gain) / 4
    for j in CONSTANT_SENSORS:
        gain[j - 1], noise[j - 1] = 0.0, 0.0
    for j in FLAT_SENSORS:
        gain[j - 1] = 0.0
        noise[j - 1] = 0.002 * base[j - 1]
    return {"base": base, "cond_effect": cond_effect, "gain": gain, "curvature": curvature, "noise": noise}


def simulate_run_to_failure(units: int = 100, *, conditions: int = 1, seed: int = 0, truncate: bool = False,
                            min_life: int = 128, max_life: int = 362, unit_offset: int = 0,
                            sensor_seed: int = 1234) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Histories of `units` units: columns `unit`, `cycle`, `setting_1..3`, `s1..s21`.

    Returns (histories, truth). Without `truncate` every history runs to failure and truth lists each
    unit's life; with it, histories stop at a random cycle and truth holds the true `rul` there.
    `sensor_seed` fixes how sensors respond (the "engine design"), so a training fleet and a test
    fleet simulated with different `seed`s share it.
    """
    if not 1 <= conditions <= len(CONDITIONS):
        raise ValueError(f"conditions must be 1..{len(CONDITIONS)}")
    model = _sensor_model(np.random.default_rng(sensor_seed))
    rng = np.random.default_rng(seed)
    frames, truth = [], []
    for u in range(units):
        life = int(rng.integers(min_life, max_life + 1))
        shape = rng.uniform(1.5, 4.0)
        wear0 = rng.uniform(0.0, 0.15)
        offset = rng.normal(0.0, 0.6, size=N_SENSORS) * model["noise"]  # manufacturing spread
        t = np.arange(1, life + 1, dtype="float64")
        health = wear0 + (1 - wear0) * np.expm1(shape * t / life) / np.expm1(shape)
        cond = rng.integers(0, conditions, size=life)
        settings = CONDITIONS[cond] + rng.normal(0.0, 1.0, size=(life, 3)) * np.array([0.002, 0.0002, 0.0])
        sensors = (model["base"] + model["cond_effect"][cond] + offset
                   + model["gain"] * health[:, None] ** model["curvature"]
                   + rng.normal(0.0, 1.0, size=(life, N_SENSORS)) * model["noise"])
        stop = life
        if truncate:
            # Like the public test sets: cut so the true remaining life lies between 5 and 150 cycles.
            stop = life - int(rng.integers(5, min(150, life - 10) + 1))
            truth.append({"unit": u + 1 + unit_offset, "rul": life - stop, "life": life})
        else:
            truth.append({"unit": u + 1 + unit_offset, "life": life})
        frame = pd.DataFrame(np.round(sensors[:stop], 4), columns=[f"s{j}" for j in range(1, N_SENSORS + 1)])
        frame.insert(0, "setting_3", np.round(settings[:stop, 2], 1))
        frame.insert(0, "setting_2", np.round(settings[:stop, 1], 4))
        frame.insert(0, "setting_1", np.round(settings[:stop, 0], 4))
        frame.insert(0, "cycle", t[:stop].astype(int))
        frame.insert(0, "unit", u + 1 + unit_offset)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), pd.DataFrame(truth)
