"""Load time and bytes of the web dashboard in headless Chromium, against floors measured on the same server.

What it measures, in one run against a private environment it starts and tears down itself
(bench/_env.py: Redis, a fresh SQLite file or PostgreSQL database, migrations, the API and one
worker consuming gan, ml, llm and system so that `/api/health` is "ok"), with a viewer token:

1. The overview, the issue's target: first load <= 300 kB transferred and interactive <= 1 s on
   localhost. Playwright drives Chromium (/usr/bin/chromium, headless). Each cold load is a fresh
   browser context (empty cache) whose init scripts put the token in sessionStorage (`pm.token`,
   what the sign-in form does) before the page's scripts run, so the load is "a signed-in user
   opens the dashboard". It navigates to `/` and waits for `main#view[data-page="overview"]
   [data-ready="true"]`. Reported per scenario (median and p90 over --runs loads):
   - transferred: the sum of `encodedDataLength` of CDP `Network.loadingFinished` (headers +
     body as sent, i.e. gzipped) over the requests the page sent up to the ready moment, and
     their count (requests sent later, e.g. the overview's 2-s polling, are not counted);
   - ready: `performance.now()` in the page when the page set data-ready="true" (a
     MutationObserver installed before the page's scripts); performance.now() counts from the
     navigation start. It is script time: the frame that paints it follows. Also
     DOMContentLoaded and load (the events' start, from the navigation timing entry), and the
     wall clock of the bench around goto + wait (includes Playwright's round trips).
   Scenarios, alternated load by load so they share the machine's state:
   - floor: `GET /api/health` opened in the browser (one JSON request through the same server,
     rendered as text), ready = load event;
   - overview, cold: the dashboard as shipped (the chart library loaded only by pages with charts);
   - overview + chart library: the same load, then the 210 kB chart library forced in
     (`import('/static/js/charts.js').then(m => m.loadChartJs())`) once ready; ready = when it has
     loaded. What lazy loading saves (an eager <script> could overlap with the API calls, so the
     time is an upper bound; the bytes are what it would cost);
   - overview, warm: one context, reloaded --runs times (the assets are revalidated, `no-cache`).
2. The jobs page with many jobs (server-side paging). Job rows are inserted straight into the
   platform's database (SQLAlchemy, the `jobs` table; mixed kinds, queues and statuses, created
   over 30 days; queued rows marked as dispatched on this broker and running rows with a
   heartbeat in the future, so the API's maintenance loop leaves them alone). First with
   --baseline-jobs rows (default 100, the least that gives two full pages of 50, so "next page"
   exists), then topped up to --jobs rows (default 10,000); the same measurements on each:
   - cold load of `#/jobs` until `main#view[data-page="jobs"][data-ready="true"]`, transferred
     bytes and requests;
   - next page: click the pager's "Older →" until the view is ready again with a different first
     row (ms from the click event's timestamp to data-ready="true", in the page);
   - filter: select "failed" in `#filter-status` until ready again (from the change event);
   - `GET /api/v1/jobs?limit=50&offset=N` from one keep-alive httpx client: p50/p99 over
     --api-calls calls with offsets spread over the whole range, plus the first and the last page
     alone, and the `status=failed` first page.

Console errors and uncaught page errors are collected and printed. Each scenario's requests are
listed for one load (the median time per URL over the runs), to show where the time goes.

Run from the repository root:

    .venv/bin/python bench/dashboard_load.py                  # 10 loads per scenario, 10,000 jobs
    .venv/bin/python bench/dashboard_load.py --runs 3 --jobs 2000 --no-json   # quick check

A JSON summary goes to bench/results/dashboard_load-<UTC timestamp>.json (git-ignored) unless
--no-json. This is a measurement, not a test: it prints whether the targets were met but exits
non-zero only if Chromium is missing, the environment fails or a page does not get ready.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

BENCH = Path(__file__).resolve().parent
for _p in (BENCH, BENCH.parent):  # run as `python bench/dashboard_load.py` from anywhere
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from _env import (  # noqa: E402
    BenchError,
    Env,
    add_env_arguments,
    machine_info,
    params_of,
    percentile,
    run_bench,
    say,
    sigterm_as_interrupt,
    start_environment,
    write_summary,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
TARGET_BYTES = 300_000  # "<= 300 KB"; kB = 1000 bytes throughout
TARGET_READY_MS = 1000.0
PAGE_SIZE = 50  # the jobs page's page size (server/static/js/pages/jobs.js)
WAIT_MS = 30_000  # a page that is not ready after this fails the run
JOB_LINKS = '#job-list a[href^="#/jobs/"]'

# Runs in every document of a context before its scripts: when main#view's data-ready becomes
# "true" (first time per page, and each false -> true transition), and the last click/change.
PROBE_JS = """(() => {
  if (window.__pm) return;
  const pm = window.__pm = { ready: {}, transitions: [], lastClick: null, lastChange: null };
  document.addEventListener("click", (e) => { pm.lastClick = e.timeStamp; }, true);
  document.addEventListener("change", (e) => { pm.lastChange = e.timeStamp; }, true);
  new MutationObserver((records) => {
    const now = performance.now();
    for (const r of records) {
      const el = r.target;
      if (el.id !== "view" || el.dataset.ready !== "true") continue;
      const page = el.dataset.page || "";
      if (!(page in pm.ready)) pm.ready[page] = now;
      if (r.oldValue === "false") pm.transitions.push({ page, t: now, hash: location.hash });
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-ready"], attributeOldValue: true });
})();"""

TIMING_JS = """() => {
  const n = performance.getEntriesByType("navigation")[0];
  return { origin: performance.timeOrigin, dcl: n ? n.domContentLoadedEventStart : null,
           load: n ? n.loadEventStart : null, ready: window.__pm ? window.__pm.ready : {} };
}"""

CHARTS_JS = """async () => {
  const m = await import("/static/js/charts.js");
  await m.loadChartJs();
  return { t: performance.now(), chart: typeof window.Chart };
}"""


# ----------------------------------------------------------------------------------- the browser side
@dataclass
class Request:
    url: str
    wall_ms: float  # epoch ms when the request was sent (CDP wallTime)
    ts: float  # CDP monotonic seconds
    status: int | None = None
    bytes: int = 0
    end_ts: float | None = None
    failed: str | None = None
    cached: bool = False


class NetLog:
    """The requests of one page from its CDP session (Network domain)."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.reqs: dict[str, Request] = {}
        cdp = page.context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent", self._sent)
        cdp.on("Network.responseReceived", self._response)
        cdp.on("Network.requestServedFromCache", self._from_cache)
        cdp.on("Network.loadingFinished", self._finished)
        cdp.on("Network.loadingFailed", self._failed)
        cdp.send("Network.enable")
        self.cdp = cdp

    def _sent(self, e: dict[str, Any]) -> None:
        url = e["request"]["url"]
        if url.startswith("data:"):
            return
        prev = self.reqs.get(e["requestId"])
        if prev is not None and e.get("redirectResponse"):  # the hop's bytes are not reported: none expected here
            prev.failed = "redirected"
        self.reqs[e["requestId"]] = Request(url=url, wall_ms=e["wallTime"] * 1000, ts=e["timestamp"])

    def _response(self, e: dict[str, Any]) -> None:
        r = self.reqs.get(e["requestId"])
        if r is not None:
            r.status = e["response"]["status"]
            r.cached = r.cached or bool(e["response"].get("fromDiskCache"))

    def _from_cache(self, e: dict[str, Any]) -> None:
        r = self.reqs.get(e["requestId"])
        if r is not None:
            r.cached = True

    def _finished(self, e: dict[str, Any]) -> None:
        r = self.reqs.get(e["requestId"])
        if r is not None:
            r.bytes, r.end_ts = int(e["encodedDataLength"]), e["timestamp"]

    def _failed(self, e: dict[str, Any]) -> None:
        r = self.reqs.get(e["requestId"])
        if r is not None:
            r.failed, r.end_ts = e.get("errorText") or "failed", e["timestamp"]

    def window(self, since_ms: float, until_ms: float) -> list[Request]:
        """The requests sent between two epoch-ms instants, once all of them have finished (or 3 s)."""
        deadline = time.monotonic() + 3
        while True:
            self.page.wait_for_timeout(20)  # lets the CDP events already sent reach us
            out = [r for r in self.reqs.values() if since_ms - 1 <= r.wall_ms <= until_ms + 5]
            if all(r.end_ts is not None for r in out) or time.monotonic() > deadline:
                return sorted(out, key=lambda r: r.ts)


@dataclass
class Load:
    """One page load (or in-app action) and its requests."""

    ready_ms: float
    wall_ms: float
    dcl_ms: float | None = None
    load_ms: float | None = None
    requests: list[Request] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.requests)

    def request_rows(self) -> list[tuple[str, int | None, int, float | None, str]]:
        t0 = min((r.ts for r in self.requests), default=0.0)
        return [(path_of(r.url), r.status, r.bytes, None if r.end_ts is None else (r.end_ts - r.ts) * 1000,
                 f"+{(r.ts - t0) * 1000:.0f} ms" + (" cache" if r.cached else "") + (f" {r.failed}" if r.failed else ""))
                for r in self.requests]


def path_of(url: str) -> str:
    u = urlsplit(url)
    return u.path + (f"?{u.query}" if u.query else "")


class Browser:
    """Chromium through Playwright; collects console errors and page errors of every page."""

    def __init__(self, executable: str, stack: contextlib.ExitStack) -> None:
        from playwright.sync_api import sync_playwright

        pw_cm = sync_playwright()
        self.pw = pw_cm.__enter__()

        def stop_pw() -> None:
            with contextlib.suppress(Exception):  # after an interrupt the driver may already be gone
                pw_cm.__exit__(None, None, None)

        stack.callback(stop_pw)
        try:
            self.browser = self.pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        except Exception as exc:  # playwright's Error: the executable does not start, or speaks another CDP
            raise BenchError(f"Chromium {executable} did not start under Playwright: {exc}") from exc

        def close() -> None:
            with contextlib.suppress(Exception):
                self.browser.close()

        stack.callback(close)
        self.version = self.browser.version
        self.errors: dict[str, list[str]] = {}

    def context(self, token: str | None, scenario: str) -> tuple[Any, Any, NetLog]:
        ctx = self.browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        if token:
            ctx.add_init_script(f"sessionStorage.setItem('pm.token', {json.dumps(token)});")
        ctx.add_init_script(PROBE_JS)
        page = ctx.new_page()
        errs = self.errors.setdefault(scenario, [])
        page.on("console", lambda m: errs.append(f"console.{m.type}: {m.text} [{m.location.get('url', '?')}]")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: errs.append(f"page error: {e}"))
        return ctx, page, NetLog(page)


def wait_ready(page: Any, name: str) -> None:
    try:
        page.wait_for_function("p => window.__pm && window.__pm.ready[p] !== undefined", arg=name, timeout=WAIT_MS)
    except Exception as exc:  # playwright's TimeoutError and friends
        view = page.evaluate("() => { const v = document.getElementById('view'); return v ? "
                             "[v.dataset.page, v.dataset.ready, v.innerText.slice(0, 300)] : null; }")
        raise BenchError(f"page '{name}' not ready within {WAIT_MS / 1000:.0f} s at {page.url}: view {view}: "
                         f"{str(exc).splitlines()[0]}") from exc


def open_page(page: Any, net: NetLog, url: str, ready_page: str | None) -> Load:
    """Navigate (or reload, with url "") and wait until `ready_page` is ready (None: the load event)."""
    since = time.time() * 1000
    t0 = time.perf_counter()
    if url:
        page.goto(url, wait_until="load" if ready_page is None else "commit", timeout=WAIT_MS)
    else:
        page.reload(wait_until="load" if ready_page is None else "commit", timeout=WAIT_MS)
    if ready_page is not None:
        wait_ready(page, ready_page)
    wall = (time.perf_counter() - t0) * 1000
    page.wait_for_load_state("load", timeout=WAIT_MS)
    t = page.evaluate(TIMING_JS)
    ready = t["load"] if ready_page is None else t["ready"][ready_page]
    reqs = net.window(since, t["origin"] + ready)
    return Load(ready_ms=ready, wall_ms=wall, dcl_ms=t["dcl"], load_ms=t["load"], requests=reqs)


def in_app(page: Any, net: NetLog, action: Callable[[], None], stamp: str, done_js: str, arg: Any) -> Load:
    """Time an in-app navigation: from the event (`stamp`: lastClick | lastChange) to the next
    data-ready false -> true transition for which `done_js(arg, transition)` holds."""
    n0 = page.evaluate("() => window.__pm.transitions.length")
    since = time.time() * 1000
    t0 = time.perf_counter()
    action()
    js = (f"([n0, arg]) => {{ const d = {done_js}; const ts = window.__pm.transitions.slice(n0); "
          "return ts.some((t) => d(arg, t)); }")
    try:
        page.wait_for_function(js, arg=[n0, arg], timeout=WAIT_MS)
    except Exception as exc:
        raise BenchError(f"in-app navigation did not get ready at {page.url}: {str(exc).splitlines()[0]}") from exc
    wall = (time.perf_counter() - t0) * 1000
    r = page.evaluate(f"([n0, arg]) => {{ const d = {done_js}; const pm = window.__pm; "
                      "const t = pm.transitions.slice(n0).find((x) => d(arg, x)); "
                      f"return {{ t: t.t, input: pm.{stamp}, origin: performance.timeOrigin }}; }}", [n0, arg])
    if r["input"] is None:
        raise BenchError(f"no {stamp} event was seen at {page.url}")
    reqs = net.window(since, r["origin"] + r["t"])
    return Load(ready_ms=r["t"] - r["input"], wall_ms=wall, requests=reqs)


# ----------------------------------------------------------------------------------- statistics
@dataclass
class Series:
    """One scenario's loads."""

    name: str
    loads: list[Load] = field(default_factory=list)

    def stat(self, get: Callable[[Load], float | None], q: float) -> float:
        vals = sorted(v for v in (get(x) for x in self.loads) if v is not None)
        if not vals:
            return float("nan")
        return statistics.median(vals) if q == 50 else percentile(vals, q)

    def summary(self) -> dict[str, Any]:
        def both(get: Callable[[Load], float | None]) -> dict[str, float]:
            return {"median": round(self.stat(get, 50), 1), "p90": round(self.stat(get, 90), 1)}

        return {"loads": len(self.loads), "bytes": both(lambda x: x.bytes), "bytes_max": max(x.bytes for x in self.loads),
                "requests": both(lambda x: len(x.requests)), "ready_ms": both(lambda x: x.ready_ms),
                "dcl_ms": both(lambda x: x.dcl_ms), "load_ms": both(lambda x: x.load_ms),
                "wall_ms": both(lambda x: x.wall_ms),
                "per_load": [{"bytes": x.bytes, "requests": len(x.requests), "ready_ms": round(x.ready_ms, 1),
                              "dcl_ms": None if x.dcl_ms is None else round(x.dcl_ms, 1),
                              "load_ms": None if x.load_ms is None else round(x.load_ms, 1),
                              "wall_ms": round(x.wall_ms, 1)} for x in self.loads]}

    def requests_table(self) -> list[dict[str, Any]]:
        """The requests of the median-ready load, each with its median duration over all loads."""
        if not self.loads:
            return []
        durations: dict[str, list[float]] = {}
        for x in self.loads:
            for path, _, _, ms, _ in x.request_rows():
                if ms is not None:
                    durations.setdefault(path, []).append(ms)
        mid = sorted(self.loads, key=lambda x: x.ready_ms)[len(self.loads) // 2]
        return [{"path": path, "status": status, "bytes": nbytes, "ms": None if ms is None else round(ms, 1),
                 "median_ms": round(statistics.median(durations[path]), 1) if durations.get(path) else None,
                 "note": note} for path, status, nbytes, ms, note in mid.request_rows()]


def fmt(v: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(v) else f"{v:,.{digits}f}"


def table_line(label: str, s: Series) -> str:
    kb = f"{fmt(s.stat(lambda x: x.bytes, 50) / 1000, 1)} / {fmt(s.stat(lambda x: x.bytes, 90) / 1000, 1)}"
    reqs = f"{fmt(s.stat(lambda x: len(x.requests), 50))}"
    ready = f"{fmt(s.stat(lambda x: x.ready_ms, 50))} / {fmt(s.stat(lambda x: x.ready_ms, 90))}"
    dcl = fmt(s.stat(lambda x: x.dcl_ms, 50))
    load = fmt(s.stat(lambda x: x.load_ms, 50))
    wall = fmt(s.stat(lambda x: x.wall_ms, 50))
    return f"  {label:<34} {kb:>15} {reqs:>5} {ready:>13} {dcl:>6} {load:>6} {wall:>6}"


TABLE_HEAD = (f"  {'scenario':<34} {'kB med / p90':>15} {'reqs':>5} {'ready ms':>13} {'DCL':>6} {'load':>6} {'wall':>6}\n"
              f"  {'':<34} {'':>15} {'':>5} {'med / p90':>13} {'med':>6} {'med':>6} {'med':>6}")


def print_requests(title: str, s: Series) -> list[dict[str, Any]]:
    rows = s.requests_table()
    say(f"  {title}")
    for r in rows:
        ms = "n/a" if r["ms"] is None else f"{r['ms']:.0f}"
        med = "n/a" if r["median_ms"] is None else f"{r['median_ms']:.0f}"
        say(f"    {r['path'][:62]:<62} {r['status'] or '-':>4} {r['bytes'] / 1000:>7.1f} kB {ms:>5} ms "
            f"(median {med:>4}) {r['note']}")
    return rows


# ----------------------------------------------------------------------------------- jobs data
KINDS = [("train_failure", "ml", "ml.train_failure", 30), ("train_rul", "ml", "ml.train_rul", 10),
         ("batch_predict", "ml", "ml.batch_predict", 20), ("train_tvae", "gan", "gan.train_tvae", 10),
         ("sample", "gan", "gan.sample", 10), ("explain", "llm", "llm.explain", 15),
         ("ping", "system", "system.ping", 5)]
STATUSES = [("succeeded", 70), ("failed", 15), ("cancelled", 7), ("queued", 4), ("running", 4)]


def job_rows(n: int, rng: random.Random, now: datetime, run_id: str | None) -> list[dict[str, Any]]:
    """n job rows as the job service would have left them; see the module docstring."""
    from core.models import new_id

    kinds = rng.choices(KINDS, weights=[k[3] for k in KINDS], k=n)
    statuses = rng.choices([s for s, _ in STATUSES], weights=[w for _, w in STATUSES], k=n)
    out = []
    for (kind, queue, task, _), status in zip(kinds, statuses, strict=True):
        jid = new_id()
        live = status in ("queued", "running")
        created = now - timedelta(seconds=rng.uniform(5, 3600) if live else rng.uniform(60, 30 * 86400))
        row: dict[str, Any] = {
            "id": jid, "kind": kind, "task_name": task, "queue": queue, "status": status, "progress": 0.0,
            "message": status, "params": {"dataset_id": new_id(), "bench": True}, "result": None, "metrics": None,
            "error": None, "attempts": 0, "losses": 0, "celery_task_id": f"{jid}-1", "dispatch_seq": 1,
            "dispatched_at": created + timedelta(milliseconds=20), "broker_run_id": run_id, "cancel_requested": False,
            "timeout_s": 3600, "worker": None, "heartbeat_at": None, "submitted_by": rng.choice(["bench", "alice", "bob"]),
            "created_at": created, "started_at": None, "finished_at": None, "updated_at": created}
        if status != "queued":
            started = created + timedelta(seconds=rng.uniform(0.05, 30))
            row.update(attempts=1, worker="bench-fake@localhost", started_at=started, heartbeat_at=started)
            if status == "running":
                # a heartbeat in the future: the API's reaper never finds these rows stale during the run
                row.update(progress=round(rng.uniform(0, 0.9), 2), message="running",
                           heartbeat_at=now + timedelta(days=1), updated_at=now)
            else:
                finished = started + timedelta(seconds=rng.uniform(0.5, 900))
                row.update(finished_at=finished, updated_at=finished, heartbeat_at=finished)
                if status == "succeeded":
                    row.update(progress=1.0, result={"model_id": new_id()} if kind.startswith("train") else {"rows": 100})
                elif status == "failed":
                    row.update(progress=round(rng.uniform(0, 0.9), 2), message="failed",
                               error={"type": "ValueError", "message": "the dataset has no failure label column"})
                else:
                    row.update(progress=round(rng.uniform(0, 0.9), 2), cancel_requested=True, message="cancelled")
        out.append(row)
    return out


def insert_jobs(env: Env, n: int, rng: random.Random) -> float:
    """Insert n job rows into the environment's database; seconds taken."""
    import redis
    from sqlalchemy import insert

    from core.db import dispose_all, session_scope
    from core.models import Job

    r = redis.Redis.from_url(env.redis_url, socket_connect_timeout=3)
    try:
        run_id = str(r.info("server").get("run_id"))  # what the API's dispatcher compares queued rows against
    finally:
        r.close()
    rows = job_rows(n, rng, datetime.now(UTC), run_id)
    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        with session_scope(env.db_url) as s:
            s.execute(insert(Job), rows[start:start + 1000])
    dispose_all()
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------------- scenarios
def overview_phase(b: Browser, env: Env, token: str, runs: int) -> dict[str, Series]:
    base = env.base_url
    floor, cold, charts, warm = (Series("floor"), Series("overview cold"), Series("overview + charts"),
                                 Series("overview warm"))

    def one_floor() -> Load:
        ctx, page, net = b.context(None, floor.name)
        try:
            return open_page(page, net, f"{base}/api/health", None)
        finally:
            ctx.close()

    def one_cold() -> Load:
        ctx, page, net = b.context(token, cold.name)
        try:
            return open_page(page, net, f"{base}/", "overview")
        finally:
            ctx.close()

    def one_charts() -> Load:
        ctx, page, net = b.context(token, charts.name)
        try:
            first = open_page(page, net, f"{base}/", "overview")
            since = first.requests[0].wall_ms if first.requests else time.time() * 1000
            t0 = time.perf_counter()
            r = page.evaluate(CHARTS_JS)
            if r["chart"] != "function":
                raise BenchError(f"the chart library did not load (window.Chart is {r['chart']})")
            origin = page.evaluate("() => performance.timeOrigin")
            return Load(ready_ms=r["t"], wall_ms=first.wall_ms + (time.perf_counter() - t0) * 1000,
                        dcl_ms=first.dcl_ms, load_ms=first.load_ms, requests=net.window(since, origin + r["t"]))
        finally:
            ctx.close()

    say(f"\n[1/2] overview: {runs} cold loads per scenario in fresh contexts (plus one uncounted round), "
        f"alternated; then {runs} warm reloads")
    for i in range(runs + 1):
        loads = (one_floor(), one_cold(), one_charts())
        if i > 0:  # round 0 warms the server (first requests, gzip cache) and the browser
            for s, x in zip((floor, cold, charts), loads, strict=True):
                s.loads.append(x)

    ctx, page, net = b.context(token, warm.name)
    try:
        open_page(page, net, f"{base}/", "overview")  # the cold load that fills the cache; not counted
        for _ in range(runs):
            warm.loads.append(open_page(page, net, "", "overview"))
    finally:
        ctx.close()
    return {"floor": floor, "cold": cold, "charts": charts, "warm": warm}


@dataclass
class JobsResult:
    total: int
    load: Series
    next_page: Series
    filter: Series
    api: dict[str, Any]
    pager_text: str = ""
    failed_total: int = 0


NEXT_DONE = "(old, t) => { const a = document.querySelector('" + JOB_LINKS + "'); " \
            "return t.page === 'jobs' && t.hash.includes('offset=') && !!a && a.getAttribute('href') !== old; }"
FILTER_DONE = "(_, t) => t.page === 'jobs' && t.hash.includes('status=failed')"


def jobs_phase(b: Browser, env: Env, token: str, runs: int, api_calls: int, label: str) -> JobsResult:
    base = env.base_url
    load, nxt, flt = Series(f"jobs cold ({label})"), Series(f"next page ({label})"), Series(f"filter failed ({label})")
    pager_text = ""
    for i in range(runs + 1):
        ctx, page, net = b.context(token, load.name)
        try:
            first = open_page(page, net, f"{base}/#/jobs", "jobs")
            links = page.locator(JOB_LINKS)
            shown = links.count()
            if shown == 0:
                raise BenchError(f"no job rows in {JOB_LINKS} on the jobs page ({label})")
            old = links.first.get_attribute("href")
            pager_text = page.locator("nav.pager span").first.inner_text() if page.locator("nav.pager").count() else ""
            older = page.get_by_role("button", name="Older →")
            if older.count() != 1:
                raise BenchError(f"no enabled 'Older →' pager button on the jobs page ({label}, {shown} rows)")
            n = in_app(page, net, lambda o=older: o.click(), "lastClick", NEXT_DONE, old)
            f = in_app(page, net, lambda p=page: p.select_option("#filter-status", "failed"), "lastChange", FILTER_DONE,
                       None)
            badges = page.locator("#job-list .badge").all_inner_texts()
            if not badges or set(badges) != {"failed"}:
                raise BenchError(f"the status filter shows {sorted(set(badges))} ({label})")
        finally:
            ctx.close()
        if i > 0:
            load.loads.append(first)
            nxt.loads.append(n)
            flt.loads.append(f)
    api, total, failed_total = api_latency(env, token, api_calls)
    return JobsResult(total=total, load=load, next_page=nxt, filter=flt, api=api, pager_text=pager_text,
                      failed_total=failed_total)


def api_latency(env: Env, token: str, calls: int) -> tuple[dict[str, Any], int, int]:
    """GET /api/v1/jobs latencies (ms) from one keep-alive client: offsets across the range, first and last page."""
    with httpx.Client(base_url=env.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        def get(query: dict[str, Any]) -> tuple[float, dict[str, Any]]:
            t0 = time.perf_counter()
            r = c.get("/api/v1/jobs", params=query)
            dt = (time.perf_counter() - t0) * 1000
            if r.status_code != 200:
                raise BenchError(f"GET /api/v1/jobs {query} -> {r.status_code}: {r.text[:500]}")
            return dt, r.json()

        _, page0 = get({"limit": PAGE_SIZE, "offset": 0})
        total = page0["total"]
        last = max(0, (total - 1) // PAGE_SIZE * PAGE_SIZE)
        for _ in range(5):  # warm-up
            get({"limit": PAGE_SIZE, "offset": 0})
        offsets = [round(i * last / max(1, calls - 1) / PAGE_SIZE) * PAGE_SIZE for i in range(calls)]
        spread = []
        for off in offsets:
            dt, body = get({"limit": PAGE_SIZE, "offset": off})
            if not body["items"]:
                raise BenchError(f"GET /api/v1/jobs offset {off} returned no items (total {total})")
            spread.append(dt)

        def stats(xs: list[float]) -> dict[str, float]:
            xs = sorted(xs)
            return {"p50_ms": round(percentile(xs, 50), 2), "p99_ms": round(percentile(xs, 99), 2), "calls": len(xs)}

        first = [get({"limit": PAGE_SIZE, "offset": 0})[0] for _ in range(10)]
        lastp = [get({"limit": PAGE_SIZE, "offset": last})[0] for _ in range(10)]
        failed = []
        failed_total = 0
        for _ in range(10):
            dt, body = get({"limit": PAGE_SIZE, "offset": 0, "status": "failed"})
            failed.append(dt)
            failed_total = body["total"]
    return ({"spread": {**stats(spread), "offsets": f"0..{last} step ~{(last // max(1, calls - 1)) or PAGE_SIZE}"},
             "first_page": stats(first), "last_page": {**stats(lastp), "offset": last},
             "failed_first_page": stats(failed)}, total, failed_total)


# ----------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs", type=int, default=10, help="counted loads per scenario (each cold one in a new context)")
    p.add_argument("--jobs", type=int, default=10_000, help="job rows in the database for the jobs-page measurements")
    p.add_argument("--baseline-jobs", type=int, default=100,
                   help="job rows for the jobs-page baseline (> 50, so that the pager has a next page)")
    p.add_argument("--api-calls", type=int, default=50, help="GET /api/v1/jobs calls at offsets across the range")
    p.add_argument("--chromium", default=CHROMIUM, help="the Chromium executable Playwright drives")
    add_env_arguments(p)
    p.add_argument("--json-out", type=Path, help="summary path (default bench/results/dashboard_load-<ts>.json)")
    p.add_argument("--no-json", action="store_true", help="do not write the JSON summary")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, SQLite file) after the run")
    args = p.parse_args(argv)
    if args.runs < 1 or args.api_calls < 2:
        p.error("--runs must be >= 1 and --api-calls >= 2")
    if args.baseline_jobs <= PAGE_SIZE:
        p.error(f"--baseline-jobs must be > {PAGE_SIZE} (one page has {PAGE_SIZE} rows; the pager needs a second)")
    if args.jobs <= args.baseline_jobs:
        p.error("--jobs must be > --baseline-jobs")
    return args


def check_chromium(path: str) -> str | None:
    """Why the browser can't be used, or None."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return (f"Chromium is missing: {path} is not an executable file. Install the distribution's package "
                "(e.g. `apt-get install chromium`) or pass --chromium PATH; this benchmark does not use "
                "`playwright install`.")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"the playwright Python package is missing ({exc}); install it in the venv (pip install playwright)"
    return None


def header(info: dict[str, Any], args: argparse.Namespace, env: Env, chromium: str) -> None:
    import importlib.metadata

    say("=" * 78)
    say("web dashboard load benchmark")
    say(f"  date      {info['date_utc']}")
    say(f"  machine   {info['arch']}, {info['nproc']} CPUs, {info['cpu']}, load avg "
        f"{' '.join(str(x) for x in info['loadavg'])} at start")
    say(f"  python    {info['python']}   git {info['git']}")
    say(f"  browser   Chromium {chromium} ({args.chromium}, headless), Playwright "
        f"{importlib.metadata.version('playwright')}")
    say(f"  database  {env.describe_db(args.pg_admin_url)}")
    say(f"  redis     {env.redis_source}")
    say(f"  workload  {args.runs} loads per scenario; jobs page with {args.baseline_jobs} then {args.jobs:,} job rows; "
        f"{args.api_calls} GET /api/v1/jobs per size")
    say("=" * 78)


def run(args: argparse.Namespace) -> int:
    info = machine_info()

    def body(tmp: Path, stack: contextlib.ExitStack) -> None:
        b = Browser(args.chromium, stack)
        env = start_environment(args, tmp, stack, queues="gan,ml,llm,system", pool="prefork")
        token = env.cli("token", "create", "--role", "viewer", "--name", "bench-viewer").strip().splitlines()[-1]
        info["chromium"] = b.version
        header(info, args, env, b.version)
        summary: dict[str, Any] = {"machine": info, "db": env.db_backend, "redis": env.redis_source,
                                   "params": params_of(args), "units": "kB = 1000 bytes; ms"}

        ov = overview_phase(b, env, token, args.runs)
        say(TABLE_HEAD)
        for key, label in (("floor", "floor: GET /api/health in the tab"), ("cold", "overview, cold (as shipped)"),
                           ("charts", "overview + chart library forced"), ("warm", "overview, warm reload")):
            say(table_line(label, ov[key]))
        cold = ov["cold"]
        kb_max = max(x.bytes for x in cold.loads)
        ready_p90 = cold.stat(lambda x: x.ready_ms, 90)
        bytes_ok, ready_ok = kb_max <= TARGET_BYTES, ready_p90 <= TARGET_READY_MS
        saved = ov["charts"].stat(lambda x: x.bytes, 50) - cold.stat(lambda x: x.bytes, 50)
        say("  ready = performance.now() when main#view got data-ready=\"true\" (from navigation start; the floor: "
            "load event);\n  DCL/load = event start from the navigation entry; wall = bench clock around "
            "goto + wait")
        say(f"  target transferred <= {TARGET_BYTES / 1000:.0f} kB: worst cold load {kb_max / 1000:.1f} kB -> "
            f"{'MET' if bytes_ok else 'NOT MET'}")
        say(f"  target interactive <= {TARGET_READY_MS:.0f} ms: cold p90 {ready_p90:.0f} ms (median "
            f"{cold.stat(lambda x: x.ready_ms, 50):.0f}; floor {ov['floor'].stat(lambda x: x.ready_ms, 50):.0f}) -> "
            f"{'MET' if ready_ok else 'NOT MET'}")
        say(f"  lazy chart library saves {saved / 1000:.1f} kB on the first load (+"
            f"{ov['charts'].stat(lambda x: x.ready_ms, 50) - cold.stat(lambda x: x.ready_ms, 50):.0f} ms if loaded after "
            "ready)")
        summary["overview"] = {k: s.summary() for k, s in ov.items()}
        summary["overview"]["targets"] = {"bytes_max": kb_max, "bytes_target": TARGET_BYTES, "bytes_met": bytes_ok,
                                          "ready_p90_ms": round(ready_p90, 1), "ready_target_ms": TARGET_READY_MS,
                                          "ready_met": ready_ok}
        summary["overview"]["requests_cold"] = print_requests(
            "requests of the median cold overview load (ms: this load; median: over all cold loads):", cold)

        say(f"\n[2/2] jobs page: {args.runs} cold loads of #/jobs (fresh contexts, plus one uncounted), each followed "
            "by 'Older →' and the 'failed' filter;\n      GET /api/v1/jobs latencies from one keep-alive client")
        rng = random.Random(20240601)
        results: list[JobsResult] = []
        for n in (args.baseline_jobs, args.jobs):
            have = results[-1].total if results else 0
            took = insert_jobs(env, n - have, rng)
            say(f"  inserted {n - have:,} job rows in {took:.1f} s -> {n:,} in the database")
            res = jobs_phase(b, env, token, args.runs, args.api_calls, f"{n:,} jobs")
            if res.total != n:
                raise BenchError(f"GET /api/v1/jobs reports total {res.total}, expected {n}")
            results.append(res)
        base_r, many = results
        say(TABLE_HEAD)
        for r in results:
            say(table_line(f"jobs cold, {r.total:,} jobs", r.load))
        say("  in-app (ready ms = from the click/change event to data-ready=\"true\" again; kB = requests it made):")
        for r in results:
            say(table_line(f"'Older →', {r.total:,} jobs", r.next_page))
        for r in results:
            say(table_line(f"filter failed, {r.total:,} jobs ({r.failed_total:,})", r.filter))
        say(f"  pager text: '{base_r.pager_text}' / '{many.pager_text}'")
        say(f"  GET /api/v1/jobs?limit={PAGE_SIZE}&offset=N (ms)           {base_r.total:>8,} jobs   {many.total:>8,} jobs")
        for key, label in (("spread", f"{args.api_calls} offsets across the range p50"),
                           ("spread", "  same, p99"), ("first_page", "offset 0 p50 (10 calls)"),
                           ("last_page", "last page p50 (10 calls)"), ("failed_first_page", "status=failed offset 0 p50")):
            stat = "p99_ms" if "p99" in label else "p50_ms"
            say(f"    {label:<52} {base_r.api[key][stat]:>8.1f}   {many.api[key][stat]:>8.1f}")
        say(f"    (last page offset: {base_r.api['last_page']['offset']} / {many.api['last_page']['offset']:,})")
        summary["jobs"] = {r.load.name: {"total": r.total, "failed_total": r.failed_total, "pager_text": r.pager_text,
                                         "cold_load": r.load.summary(), "next_page": r.next_page.summary(),
                                         "filter_failed": r.filter.summary(), "api": r.api} for r in results}
        summary["jobs"]["requests_cold_many"] = print_requests(
            f"requests of the median cold jobs-page load with {many.total:,} jobs:", many.load)

        say("\nconsole errors and page errors:")
        if not any(b.errors.values()):
            say("  none")
        for scenario, errs in b.errors.items():
            if errs:
                uniq = sorted(set(errs))
                say(f"  {scenario}: {len(errs)} ({len(uniq)} distinct)")
                for e in uniq[:5]:
                    say(f"    {e[:200]}")
        summary["console_errors"] = {k: sorted(set(v)) for k, v in b.errors.items() if v}
        summary["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        say(f"\nload avg at the end: {' '.join(str(x) for x in summary['loadavg_end'])} ({info['nproc']} CPUs)")
        write_summary(args, "dashboard_load", summary)

    return run_bench(args.keep_tmp, body)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = check_chromium(args.chromium)
    if problem:
        print(f"dashboard_load: {problem}", file=sys.stderr)
        return 2
    with sigterm_as_interrupt():
        return run(args)


if __name__ == "__main__":
    sys.exit(main())
