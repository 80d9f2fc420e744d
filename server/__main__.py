"""`python -m server <command>`: up, api, worker, flower, db, token. Every command reads the same
settings (environment variables and an optional .env); `--help` on any command lists its flags."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.settings import ALL_QUEUES, ConfigError, get_settings

IS_WINDOWS = os.name == "nt"


def _queues(value: str) -> list[str]:
    queues = [q.strip() for q in value.split(",") if q.strip()]
    bad = [q for q in queues if q not in ALL_QUEUES]
    if not queues or bad:
        raise argparse.ArgumentTypeError(f"unknown queue {', '.join(bad) or value!r}; choose from {', '.join(ALL_QUEUES)}")
    return queues


def build_parser() -> argparse.ArgumentParser:
    s = get_settings()
    p = argparse.ArgumentParser(prog="python -m server", description="Predictive-maintenance platform")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run API, one worker per queue and Flower (embedded broker unless REDIS_URL)")
    up.add_argument("--host", default=s.api_host)
    up.add_argument("--port", type=int, default=s.api_port)
    up.add_argument("--no-flower", action="store_true", help="do not start Flower")
    up.add_argument("--pool", choices=["solo", "prefork", "threads"], help="worker pool (default: solo on Windows, prefork elsewhere)")

    api = sub.add_parser("api", help="run the HTTP API only")
    api.add_argument("--host", default=s.api_host)
    api.add_argument("--port", type=int, default=s.api_port)
    api.add_argument("--pidfile", type=Path, help="write this process's identity here (for `stop`)")

    w = sub.add_parser("worker", help="run a Celery worker for one queue (or a comma list)")
    w.add_argument("--queue", "-Q", required=True, type=_queues, help="gan | ml | llm (| system), comma-separated")
    w.add_argument("--pool", choices=["solo", "prefork", "threads"], default="solo" if IS_WINDOWS else "prefork")
    w.add_argument("--concurrency", "-c", type=int, default=1)
    w.add_argument("--name", "-n", help="node name (default <queue>@<host>)")
    w.add_argument("--loglevel", default=s.log_level)
    w.add_argument("--pidfile", type=Path, help="write this process's identity here (for `stop`)")

    fl = sub.add_parser("flower", help="run Flower (basic auth from FLOWER_USER / FLOWER_PASSWORD)")
    fl.add_argument("--host", default=s.flower_host)
    fl.add_argument("--port", type=int, default=s.flower_port)
    fl.add_argument("--pidfile", type=Path, help="write this process's identity here (for `stop`)")

    st = sub.add_parser("stop", help="stop processes started with --pidfile (only those, never other processes)")
    st.add_argument("pidfiles", nargs="*", type=Path, help="PID files (default: every *.pid in --pid-dir)")
    st.add_argument("--pid-dir", type=Path, default=s.run_dir / "pids")

    db = sub.add_parser("db", help="database migrations")
    dbs = db.add_subparsers(dest="db_command", required=True)
    dbs.add_parser("upgrade", help="apply pending migrations")
    dbs.add_parser("current", help="print the applied revision")

    tok = sub.add_parser("token", help="API tokens")
    toks = tok.add_subparsers(dest="token_command", required=True)
    tc = toks.add_parser("create", help="create a token; prints it as the last line")
    tc.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    tc.add_argument("--name", required=True)
    toks.add_parser("list", help="list tokens (not their secrets)")
    tr = toks.add_parser("revoke", help="revoke a token by id")
    tr.add_argument("token_id")
    return p


def cmd_api(host: str, port: int) -> int:
    import uvicorn

    uvicorn.run("server.app:create_app", factory=True, host=host, port=port, log_config=None,
                access_log=False, proxy_headers=False, timeout_graceful_shutdown=5)
    return 0


def cmd_worker(queues: list[str], pool: str, concurrency: int, name: str | None, loglevel: str) -> int:
    from celery_app import app

    argv = ["worker", "-Q", ",".join(queues), "-P", pool, "-c", str(concurrency), "-n", name or f"{queues[0]}@%h",
            "--loglevel", loglevel, "-E", "--without-mingle", "--without-gossip"]
    if pool == "prefork":
        # Replace a pool child only once a job left it big: recycling by task count stalls the queue
        # for seconds per replacement (measured with bench/queue_throughput.py).
        argv += ["--max-memory-per-child", str(get_settings().worker_max_memory_mb * 1024)]
    app.worker_main(argv)
    return 0


def cmd_flower(host: str, port: int) -> int:
    import subprocess

    s = get_settings()
    env = {**os.environ, "FLOWER_BASIC_AUTH": f"{s.flower_user}:{s.flower_secret()}", "FLOWER_UNAUTHENTICATED_API": "false"}
    s.data_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "celery", "-A", "celery_app", "flower", f"--address={host}", f"--port={port}",
            "--persistent=True", f"--db={s.data_dir / 'flower.db'}", "--max_tasks=10000"]
    if not IS_WINDOWS:
        os.execve(sys.executable, argv, env)  # become Flower, so stopping this process stops Flower
    return subprocess.call(argv, env=env)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    if getattr(args, "pidfile", None):
        from core.pidfiles import write_pidfile

        write_pidfile(args.pidfile)
    try:
        if args.command == "up":
            from server.supervisor import up

            return up(settings, args.host, args.port, flower=not args.no_flower, pool=args.pool)
        if args.command == "api":
            return cmd_api(args.host, args.port)
        if args.command == "worker":
            return cmd_worker(args.queue, args.pool, args.concurrency, args.name, args.loglevel)
        if args.command == "flower":
            return cmd_flower(args.host, args.port)
        if args.command == "db":
            from core.migrate import current_revision, upgrade

            if args.db_command == "upgrade":
                upgrade(settings.db_url)
            print(current_revision(settings.db_url) or "(empty database)")
            return 0
        if args.command == "token":
            return cmd_token(args)
        if args.command == "stop":
            return cmd_stop(args.pidfiles or sorted(args.pid_dir.glob("*.pid")))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


def cmd_stop(pidfiles: list[Path]) -> int:
    from core.pidfiles import stop_pidfiles

    if not pidfiles:
        print("nothing to stop: no PID files")
        return 0
    for r in stop_pidfiles(pidfiles):
        print(f"{r.pidfile.name}: pid {r.pid if r.pid is not None else '?'} {r.outcome}")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from core import auth
    from core.db import session_scope
    from core.migrate import upgrade
    from core.models import ApiToken

    settings = get_settings()
    upgrade(settings.db_url)
    with session_scope(settings.db_url) as session:
        if args.token_command == "create":
            try:
                row, plaintext = auth.create_token(session, name=args.name, role=args.role, created_by="cli")
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"created {row.role} token '{row.name}' (id {row.id}); it is shown only once:", file=sys.stderr)
            print(plaintext)
            return 0
        if args.token_command == "list":
            for r in session.scalars(select(ApiToken).order_by(ApiToken.created_at)):
                state = "revoked" if r.revoked_at else "active"
                print(f"{r.id}  {r.role:<8} {state:<7} {r.prefix}…  {r.name}")
            return 0
        if args.token_command == "revoke":
            if not auth.revoke(session, args.token_id):
                print(f"error: no active token with id {args.token_id}", file=sys.stderr)
                return 2
            print(f"revoked {args.token_id}")
            return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
