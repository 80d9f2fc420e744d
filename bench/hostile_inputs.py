"""What hostile requests cost the API: status, error code, time to answer and API memory (issue 12).

One run against a private environment it starts and tears down itself (bench/_env.py: temp
DATA_DIR, private Redis, fresh SQLite file or PostgreSQL database, the API and one `ml,system`
worker started with `python -m server ...`). The API runs under `prlimit --as=<--api-max-as-mb>`
(default 4096 MB of address space), so a regression that tries to hold a bomb in memory kills the
API, not the machine; such a case is reported as "API died" and the API is restarted for the next.

Setup: AI4I (data/samples/ai4i2020.csv) uploaded and a failure model trained on it (cv_folds 2).
Then, for each case, the API's resting RSS (psutil, median of ~0.5 s of samples just before) and
its peak RSS sampled every 20 ms during the request, the status, the error code and the time:

1. predict: one row of 50,000 keys (`--smoke`: 5,000) + 9,999 empty rows;
2. Parquet bombs: zstd files of 50 M and 300 M float zeros (`--smoke`: 1 M and 3 M), written in
   the temp dir with pyarrow's ParquetWriter in row groups of a few million rows, uploaded as datasets;
3. CSV with a 40,000-column header (`--smoke`: 2,000); CSV with one 200,000-char field (`--smoke`: 20,000);
4. `Authorization: Bearer junk` with a 400 MB multipart body (`--smoke`: 5 MB) streamed from a
   generator over a raw socket; reports how many bytes were sent before the server answered or closed;
5. TVAE with decompress_dims [867513] (no gan worker runs: an accepted job is cancelled at once);
6. a NUL in a query parameter (/api/v1/datasets?name=a%00b) and ?offset=1e20 on /api/v1/llm/explanations.

Run from the repository root:

    .venv/bin/python bench/hostile_inputs.py            # full sizes, SQLite
    .venv/bin/python bench/hostile_inputs.py --smoke    # tiny sizes, well under a minute after setup
    .venv/bin/python bench/hostile_inputs.py --db postgresql

A JSON summary goes to bench/results/hostile_inputs-<UTC timestamp>.json (git-ignored) unless
--no-json. A measurement, not a test: it exits non-zero only if the environment fails (a case the
API refuses, accepts or dies on is a result, printed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
for _p in (BENCH, BENCH.parent):  # run as `python bench/hostile_inputs.py` from anywhere
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import httpx  # noqa: E402
from _env import (  # noqa: E402
    AI4I_CSV,
    BenchError,
    Env,
    PlatformApi,
    RssSampler,
    add_env_arguments,
    health,
    machine_info,
    params_of,
    print_header,
    resting_rss_mb,
    run_bench,
    say,
    sigterm_as_interrupt,
    start_environment,
    wait_until,
    write_summary,
)

MB = 1024 * 1024
SAMPLE_S = 0.02
REST_S = 0.5
ROW_GROUP = 4_000_000


# ----------------------------------------------------------------------------------- memory
def resting_rss(pid: int) -> float:
    return resting_rss_mb(pid, REST_S, SAMPLE_S)


# ----------------------------------------------------------------------------------- inputs
def zeros_parquet(path: Path, rows: int) -> float:
    """`rows` float64 zeros in one column, plain-encoded (no dictionary) + zstd, row groups of ROW_GROUP rows, written piece by piece."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("x", pa.float64())])
    piece = pa.table({"x": pa.array(np.zeros(min(rows, ROW_GROUP)))})
    with pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=False) as w:
        left = rows
        while left > 0:
            n = min(left, ROW_GROUP)
            w.write_table(piece.slice(0, n), row_group_size=ROW_GROUP)
            left -= n
    return path.stat().st_size / MB


def wide_csv(path: Path, columns: int) -> float:
    with open(path, "w") as f:
        f.write(",".join(f"c{i}" for i in range(columns)) + "\n")
        f.write(",".join("0" for _ in range(columns)) + "\n")
    return path.stat().st_size / MB


def long_field_csv(path: Path, chars: int) -> float:
    with open(path, "w") as f:
        f.write("note,value\n" + "x" * chars + ",1\n" + "y,2\n")
    return path.stat().st_size / MB


# ----------------------------------------------------------------------------------- cases
@dataclass
class Outcome:
    case: str
    status: int | None = None
    code: str | None = None
    seconds: float = 0.0
    rest_mb: float = 0.0
    peak_mb: float = 0.0
    delta_mb: float = 0.0
    note: str = ""


def error_code(r: httpx.Response) -> str | None:
    try:
        body = r.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("code"))
    return None


class Runner:
    def __init__(self, env: Env, api: PlatformApi) -> None:
        self.env, self.api = env, api
        self.results: list[Outcome] = []

    def api_child(self) -> Any:
        return next(c for c in self.env.children if c.name == "api")

    def restart_api(self) -> None:
        child = self.api_child()
        child.stop()
        child.start()
        wait_until(lambda: health(self.env.base_url, self.env.token) is not None, timeout=90,
                   what="API restarted", interval=0.2, on_timeout=self.env.logs)

    def run(self, case: str, call: Callable[[], tuple[int | None, str | None, str]]) -> Outcome:
        pid = self.env.api_pid()
        if pid is None:
            raise BenchError("no API process")
        out = Outcome(case, rest_mb=round(resting_rss(pid), 1))
        sampler = RssSampler(pid, SAMPLE_S)
        sampler.start()
        t0 = time.perf_counter()
        try:
            out.status, out.code, out.note = call()
        except (httpx.HTTPError, OSError) as exc:
            out.note = f"{type(exc).__name__}: {exc}"[:120]
        out.seconds = round(time.perf_counter() - t0, 3)
        samples = sampler.stop()
        out.peak_mb = round(max(samples), 1)
        out.delta_mb = round(out.peak_mb - out.rest_mb, 1)
        if out.status == 500:
            out.note = f"{self.last_unhandled()} {out.note}".strip()
        if not self.api_child().alive():
            out.note = f"API died (exit {self.api_child().proc.returncode}); restarted. {out.note}".strip()
            say(f"  {case}: API DIED -- restarting it")
            self.restart_api()
        say(f"  {case}: {out.status} {out.code or '-'} in {out.seconds:.2f} s; API RSS {out.rest_mb:.0f} MB "
            f"resting, {out.peak_mb:.0f} MB peak ({out.delta_mb:+.0f} MB){'; ' + out.note if out.note else ''}")
        self.results.append(out)
        return out

    def last_unhandled(self) -> str:
        """The last line of the API log's latest "unhandled error" traceback (why a 500 was a 500)."""
        for line in reversed(self.api_child().log_tail(200_000).splitlines()):
            with contextlib.suppress(ValueError, AttributeError):
                rec = json.loads(line)
                if rec.get("msg") == "unhandled error":
                    return str(rec.get("exc", "")).strip().splitlines()[-1][:110]
        return ""

    # -------------------------------------------------------------------------- the requests
    def http(self, method: str, url: str, **kw: Any) -> tuple[int, str | None, str]:
        r = self.api.client.request(method, url, **kw)
        return r.status_code, error_code(r), ""

    def upload(self, path: Path, media: str) -> tuple[int, str | None, str]:
        with open(path, "rb") as f:
            r = self.api.client.post("/api/v1/datasets", files={"file": (path.name, f, media)},
                                     data={"name": path.stem}, timeout=900)
        note = f"accepted: {r.json().get('rows')} rows" if r.status_code == 201 else ""
        return r.status_code, error_code(r), note

    def junk_token_body(self, total: int) -> tuple[int | None, str | None, str]:
        """A multipart POST with a junk token, its body streamed from a generator over a raw socket."""
        boundary = "hostilebench"
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="junk.csv"\r\n'
                "Content-Type: text/csv\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def body() -> Iterator[bytes]:
            yield head
            chunk = b"0" * (256 * 1024)
            left = total - len(head) - len(tail)
            while left > 0:
                yield chunk[:left]
                left -= len(chunk)
            yield tail

        host, port = self.env.base_url.removeprefix("http://").split(":")
        sent = 0
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall((f"POST /api/v1/datasets HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer junk\r\n"
                          f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\n"
                          "Connection: close\r\n\r\n").encode())
            how = "sent it all"
            for piece in body():
                if select.select([sock], [], [], 0)[0]:
                    how = "server answered first"
                    break
                try:
                    sock.sendall(piece)
                except (BrokenPipeError, ConnectionResetError):
                    how = "server closed"
                    break
                sent += len(piece)
            raw = b""
            with contextlib.suppress(OSError):
                sock.settimeout(10)
                while b"\r\n\r\n" not in raw and (data := sock.recv(65536)):
                    raw += data
        status = None
        code = None
        if raw.startswith(b"HTTP/"):
            status = int(raw.split(b" ", 2)[1])
            with contextlib.suppress(ValueError, IndexError):
                code = json.loads(raw.split(b"\r\n\r\n", 1)[1] or b"{}").get("error", {}).get("code")
        return status, code, f"{sent / MB:.1f} of {total / MB:.0f} MB sent ({how})"

    def tvae(self, dataset_id: str) -> tuple[int, str | None, str]:
        r = self.api.client.post("/api/v1/gan/models", json={"dataset_id": dataset_id, "epochs": 1,
                                                             "decompress_dims": [867513]})
        note = ""
        if r.status_code == 202:
            job_id = r.json()["id"]
            c = self.api.client.post(f"/api/v1/jobs/{job_id}/cancel")
            note = f"accepted as job {job_id} (no gan worker here; cancel -> {c.status_code})"
        return r.status_code, error_code(r), note


# ----------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes (5,000 keys, 1 M / 3 M zeros, 5 MB junk body): checks the bench in seconds")
    p.add_argument("--api-max-as-mb", type=int, default=4096,
                   help="address-space cap of the API process (prlimit --as); a bomb kills the API, not the machine")
    add_env_arguments(p)
    p.add_argument("--json-out", type=Path, help="summary path (default bench/results/hostile_inputs-<ts>.json)")
    p.add_argument("--no-json", action="store_true", help="do not write the JSON summary")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, inputs) after the run")
    return p.parse_args(argv)


def sizes(smoke: bool) -> dict[str, int]:
    if smoke:
        return {"keys": 5_000, "zeros": [1_000_000, 3_000_000], "columns": 2_000, "chars": 20_000,  # type: ignore[dict-item]
                "junk": 5 * MB}
    return {"keys": 50_000, "zeros": [50_000_000, 300_000_000], "columns": 40_000, "chars": 200_000,  # type: ignore[dict-item]
            "junk": 400 * MB}


def run(args: argparse.Namespace) -> int:
    info = machine_info()
    sz: dict[str, Any] = sizes(args.smoke)
    ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3

    def body(tmp: Path, stack: contextlib.ExitStack) -> None:
        env = start_environment(args, tmp, stack, queues="ml,system", pool="prefork",
                                api_max_as_bytes=args.api_max_as_mb * MB)
        print_header("hostile inputs benchmark (issue 12)", info, args, env,
                     f"{'smoke' if args.smoke else 'full'} sizes; API under prlimit --as={args.api_max_as_mb} MB; "
                     f"RAM {ram_gb:.1f} GiB")
        api = stack.enter_context(PlatformApi(env, timeout=600))
        runner = Runner(env, api)

        say("\n[setup] upload AI4I, train a failure model (cv_folds 2), build the inputs")
        t0 = time.perf_counter()
        ds = api.upload_dataset(AI4I_CSV, "ai4i2020")
        model_id = api.train_failure(ds["id"], cv_folds=2)["result"]["model_id"]
        say(f"  AI4I uploaded and model trained in {time.perf_counter() - t0:.1f} s")
        inputs = tmp / "inputs"
        inputs.mkdir()
        pq_small, pq_big = (inputs / f"zeros_{n // 1_000_000}M.parquet" for n in sz["zeros"])
        mb_small = zeros_parquet(pq_small, sz["zeros"][0])
        mb_big = zeros_parquet(pq_big, sz["zeros"][1])
        wide = inputs / f"wide_{sz['columns']}.csv"
        wide_mb = wide_csv(wide, sz["columns"])
        longf = inputs / f"field_{sz['chars']}.csv"
        long_field_csv(longf, sz["chars"])
        say(f"  model {model_id}; Parquet {mb_small:.2f} MB ({sz['zeros'][0]:,} zeros) and {mb_big:.2f} MB "
            f"({sz['zeros'][1]:,} zeros); wide CSV {wide_mb:.2f} MB")

        say("\n[cases]")
        rows = [{f"k{i}": 0 for i in range(sz["keys"])}] + [{} for _ in range(9_999)]
        payload = json.dumps({"rows": rows}).encode()
        del rows
        runner.run(f"1 predict {sz['keys']:,} keys + 9,999 empty rows",
                   lambda: runner.http("POST", f"/api/v1/models/{model_id}/predict", content=payload,
                                       headers={"Content-Type": "application/json"}))
        runner.run(f"2a Parquet {mb_small:.1f} MB, {sz['zeros'][0] / 1e6:g}M zeros",
                   lambda: runner.upload(pq_small, "application/vnd.apache.parquet"))
        runner.run(f"2b Parquet {mb_big:.1f} MB, {sz['zeros'][1] / 1e6:g}M zeros",
                   lambda: runner.upload(pq_big, "application/vnd.apache.parquet"))
        runner.run(f"3a CSV header of {sz['columns']:,} columns", lambda: runner.upload(wide, "text/csv"))
        runner.run(f"3b CSV field of {sz['chars']:,} chars", lambda: runner.upload(longf, "text/csv"))
        runner.run(f"4 Bearer junk + {sz['junk'] // MB} MB streamed body", lambda: runner.junk_token_body(sz["junk"]))
        runner.run("5 TVAE decompress_dims [867513]", lambda: runner.tvae(ds["id"]))
        runner.run("6a NUL in query (datasets?name=a%00b)", lambda: runner.http("GET", "/api/v1/datasets?name=a%00b"))
        runner.run("6b llm/explanations?offset=1e20",
                   lambda: runner.http("GET", "/api/v1/llm/explanations?offset=1e20"))

        say("\n" + "=" * 118)
        say(f"hostile inputs: {info['date_utc']}  git {info['git']}  {info['nproc']} CPUs, RAM {ram_gb:.1f} GiB  "
            f"db {env.db_backend}  {'smoke' if args.smoke else 'full'}")
        say(f"{'case':<44} {'status':>6} {'error code':<22} {'time s':>7} {'rest MB':>8} {'peak MB':>8} "
            f"{'delta':>7}  note")
        for o in runner.results:
            say(f"{o.case:<44} {o.status if o.status is not None else '-':>6} {o.code or '-':<22} {o.seconds:>7.2f} "
                f"{o.rest_mb:>8.0f} {o.peak_mb:>8.0f} {o.delta_mb:>+7.0f}  {o.note}")
        say("=" * 118)
        write_summary(args, "hostile_inputs", {"machine": {**info, "ram_gib": round(ram_gb, 1)}, "db": env.db_backend,
                                               "params": params_of(args), "sizes": sz,
                                               "results": [asdict(o) for o in runner.results]})

    return run_bench(args.keep_tmp, body)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with sigterm_as_interrupt():
        return run(args)


if __name__ == "__main__":
    sys.exit(main())
