"""``flightsrv``: the command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from flightsrv import sqlclient
from flightsrv.config import ConfigError, TlsSettings, load_config
from flightsrv.flightsql.server import COMPRESSIONS
from flightsrv.listeners import ListenerError
from flightsrv.runtime import Endpoints, Runtime
from flightsrv.signals import StopSignals
from flightsrv.terminal import attach_progress, configure_logging
from flightsrv.workers import (
    WorkerPool,
    exit_with_parent,
    notify_serving,
    unshareable,
    worker_command,
)
from sync.snapshots import SnapshotRestoreError

DEFAULT_FLIGHT = "127.0.0.1:50051"
DEFAULT_HTTP = "127.0.0.1:8090"
DEFAULT_METRICS = "127.0.0.1:9090"
EXIT_CONFIG = 2
# Running queries are interrupted in their engines at once; the rest is the syncs committing
# or rolling back their batch. An orchestrator's grace period is usually 10 s or more.
SHUTDOWN_TIMEOUT_S = 4.5
EXIT_UNREACHABLE = 1


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flightsrv",
        description="Mirror DynamoDB tables through their streams into SQL accelerators and "
        "serve them over Arrow Flight SQL.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start the runtime")
    run.add_argument("--config", type=Path, default=Path("spicepod.yaml"), help="spicepod file")
    run.add_argument(
        "--flight", type=_address, default=_address(DEFAULT_FLIGHT), metavar="HOST:PORT"
    )
    run.add_argument("--http", type=_address, default=_address(DEFAULT_HTTP), metavar="HOST:PORT")
    run.add_argument(
        "--metrics",
        type=_address,
        metavar="HOST:PORT",
        help=f"Prometheus metrics listener (GET /metrics; default {DEFAULT_METRICS}, skipped "
        "with an error logged when that port is busy)",
    )
    run.add_argument(
        "--shutdown-timeout",
        type=float,
        default=SHUTDOWN_TIMEOUT_S,
        metavar="SECONDS",
        help="on Ctrl-C or SIGTERM, exit after this long even if something still runs "
        f"(default {SHUTDOWN_TIMEOUT_S:g}); a second signal exits at once",
    )
    run.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="answer Flight SQL from N processes on the --flight port (the first also syncs); "
        "for datasets other processes may read: postgres, sqlite and cayenne files",
    )
    run.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    run.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    run.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument(
        "--log-format",
        default="plain",
        choices=["plain", "json"],
        help="plain lines (with live bootstrap bars on a terminal) or one JSON object per line",
    )
    run.add_argument(
        "--tls-certificate-file",
        type=Path,
        metavar="PEM",
        help="serve Flight SQL over TLS (grpc+tls) with this certificate chain "
        "(overrides runtime.tls; needs --tls-key-file)",
    )
    run.add_argument("--tls-key-file", type=Path, metavar="PEM", help="the certificate's key")
    run.add_argument(
        "--flight-compression",
        choices=COMPRESSIONS,
        default="none",
        help="compress result messages (default none: JDBC clients cannot read compressed "
        "messages; ADBC, pyarrow and other Arrow C++/Go/Rust clients can)",
    )
    status = commands.add_parser("status", help="print the datasets' states of a running runtime")
    status.add_argument(
        "--http",
        default=f"http://{DEFAULT_HTTP}",
        metavar="URL",
        help=f"the runtime's HTTP address (default http://{DEFAULT_HTTP})",
    )
    status.add_argument("--api-key", metavar="KEY", help="API key (runtime.auth.api-key)")
    sql = commands.add_parser(
        "sql",
        help="run SQL against a Flight SQL server and print the results",
        description="Run one query, or the statements read from standard input until EOF "
        "(each ending with ';'), against any Flight SQL server, and print each result as a "
        "table with the time it took.",
    )
    sql.add_argument("query", nargs="?", help="the query (default: read statements from stdin)")
    sql.add_argument(
        "--uri",
        default=sqlclient.DEFAULT_URI,
        help=f"grpc:// or grpc+tls:// address (default {sqlclient.DEFAULT_URI})",
    )
    sql.add_argument("--api-key", metavar="KEY", help="API key, sent as a Bearer token")
    sql.add_argument(
        "--tls-root-certs",
        "--tls-root-certificate-file",
        type=Path,
        metavar="PEM",
        help="trust these root certificates (a self-signed server certificate)",
    )
    sql.add_argument(
        "--max-rows",
        type=int,
        default=sqlclient.DEFAULT_MAX_ROWS,
        help=f"rows printed per result (default {sqlclient.DEFAULT_MAX_ROWS})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "status":
        return status(args.http, args.api_key)
    if args.command == "sql":
        return sql(args)
    if (args.tls_certificate_file is None) != (args.tls_key_file is None):
        parser.error("--tls-certificate-file and --tls-key-file go together")
    configure_logging(args.log_level, args.log_format)
    try:
        config = load_config(args.config)
        if args.tls_certificate_file is not None:
            tls = TlsSettings(args.tls_certificate_file, args.tls_key_file)
            tls.load("--tls-certificate-file/--tls-key-file")
            config = replace(config, tls=tls)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    workers = args.workers
    if workers > 1 and (refused := unshareable(config.datasets)) is not None:
        logging.getLogger("flightsrv").warning(
            "--workers %d: %s; Flight SQL is served from this one process", workers, refused
        )
        workers = 1
    try:
        if args.worker:  # Flight SQL only, on the port its parent shares
            exit_with_parent()
            endpoints = Endpoints(args.flight, None, None, shared_flight=True)
        else:
            endpoints = Endpoints(
                args.flight,
                args.http,
                args.metrics or _address(DEFAULT_METRICS),
                metrics_optional=args.metrics is None,
                shared_flight=workers > 1,
            )
        pool = None
        if workers > 1:
            pool = WorkerPool(worker_command(sys.argv[1:] if argv is None else argv), workers - 1)
        runtime = Runtime(
            config, endpoints, args.flight_compression, follow_only=args.worker, workers=pool
        )
    except ListenerError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except SnapshotRestoreError as e:
        print(f"error: {e} (snapshots.bootstrap_on_failure_behavior: retry)", file=sys.stderr)
        return 1
    with StopSignals() as signals:
        progress = attach_progress(runtime.fleet.datasets, args.log_format)
        runtime.start()
        if args.worker:
            fd = args.ready_fd
            runtime.serve_when_ready(lambda: None if fd is None else notify_serving(fd))
        log = logging.getLogger("flightsrv")
        if runtime.http is None:
            log.info(
                "worker %d serving %d dataset(s) on %s://%s:%d, following what the first "
                "process syncs",
                args.worker_index,
                len(config.datasets),
                runtime.flight_scheme,
                *args.flight,
            )
        else:
            log.info(
                "serving %d dataset(s): Flight SQL on %s://%s:%d%s, HTTP on http://%s:%d%s",
                len(config.datasets),
                runtime.flight_scheme,
                args.flight[0],
                args.flight[1] if runtime.relay is not None else runtime.flight.port,
                f" ({workers} processes)" if workers > 1 else "",
                args.http[0],
                runtime.http.port,
                ", API key required" if config.api_keys else "",
            )
        if runtime.metrics_server is not None:
            metrics = runtime.metrics_server
            log.info("metrics on http://%s:%d/metrics", metrics.host, metrics.port)
        signals.wait()
        log.info("stopping")
        # Stop in a thread: this one stays free to take a second signal, and to give up after
        # the grace period (every batch commits with its checkpoint, so leaving is always safe).
        stopper = threading.Thread(target=runtime.stop, name="stop", daemon=True)
        stopper.start()
        deadline = time.monotonic() + args.shutdown_timeout
        while stopper.is_alive():
            left = deadline - time.monotonic()
            if left <= 0:
                _exit_now(
                    1, f"shutdown took longer than --shutdown-timeout ({args.shutdown_timeout:g} s)"
                )
            second = signals.wait(min(left, 0.1))
            if second is not None:
                _exit_now(128 + second, "second signal")
    if progress is not None:
        progress.stop()
    log.info("stopped")
    return 0


def _exit_now(status: int, why: str) -> NoReturn:
    """Leave without waiting for anything: data and checkpoints commit together, so whatever
    was in flight is simply applied again on the next start."""
    logging.getLogger("flightsrv").error("%s; exiting now", why)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def sql(args: argparse.Namespace) -> int:
    """``flightsrv sql``: run SQL against a Flight SQL server and print the results."""
    try:
        roots = sqlclient.read_root_certs(args.tls_root_certs)
    except OSError as e:
        print(f"error: --tls-root-certs: {e.strerror}: {args.tls_root_certs}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        client = sqlclient.SqlClient(args.uri, args.api_key, roots)
    except (ValueError, OSError) as e:  # pyarrow: a malformed URI
        print(f"error: --uri: {e}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return sqlclient.run(client, args.query, max_rows=args.max_rows)
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()


def status(url: str, api_key: str | None = None) -> int:
    """``flightsrv status``: one line per dataset from the runtime's ``/v1/status``."""
    base = url if "://" in url else f"http://{url}"
    request = urllib.request.Request(
        f"{base.rstrip('/')}/v1/status", headers={"X-API-Key": api_key} if api_key else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            document = json.load(response)
    except (OSError, ValueError) as e:
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        print(f"error: cannot read the status from {base}: {reason}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(format_status(document))
    return 0


STATUS_COLUMNS = ("DATASET", "STATE", "SINCE", "LAG", "SHARDS", "ROWS", "CHECKPOINT", "DETAIL")


def format_status(document: dict[str, Any], now: float | None = None) -> str:
    """The ``/v1/status`` document as a header line and a table of datasets."""
    now = document["runtime"].get("now", time.time()) if now is None else now
    runtime = document["runtime"]
    ready = sum(d["state"] == "ready" for d in document["datasets"])
    header = (
        f"runtime {runtime['version']}, up {_elapsed(runtime['uptime_s'])}, "
        f"{ready}/{len(document['datasets'])} dataset(s) ready"
    )
    rows = [STATUS_COLUMNS]
    for d in document["datasets"]:
        rows.append(
            (
                d["name"],
                d["state"],
                _elapsed(now - d["since"]),
                "-" if d["lag_ms"] is None else _duration(d["lag_ms"] / 1000),
                str(d["shards_active"]),
                "-" if d["rows"] is None else str(d["rows"]),
                "-" if d["last_checkpoint_at"] is None else _elapsed(now - d["last_checkpoint_at"]),
                _detail(d),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(STATUS_COLUMNS) - 1)]
    lines = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]
    return "\n".join([header, *(line.rstrip() for line in lines), *_queries(runtime)])


def _queries(runtime: dict[str, Any]) -> list[str]:
    """The queries running in the engines, oldest first: what holds the cores."""
    queries = runtime.get("queries") or []
    if not queries:
        return []
    lines = ["", f"{len(queries)} running quer{'y' if len(queries) == 1 else 'ies'}:"]
    for q in queries:
        sql = " ".join(q["sql"].split())
        state = " (stopping)" if q["stopping"] else ""
        lines.append(f"  {_duration(q['age_s']):>7}  {q['call']}{state}  {sql[:100]}")
    return lines


def _detail(dataset: dict[str, Any]) -> str:
    bootstrap = dataset.get("bootstrap")
    if dataset["state"] in ("bootstrapping", "rebootstrapping") and bootstrap:
        eta = bootstrap.get("eta_s")
        return (
            f"{bootstrap['items']}/~{bootstrap['expected']} items "
            f"({bootstrap['percent']:.0f} %), ETA {'-' if eta is None else _duration(eta)}"
        )
    if dataset["state"] == "error":
        return str(dataset.get("error") or "")
    by, since = dataset.get("synced_by"), dataset.get("synced_since")
    if by is None:
        return ""
    # On an engine several runtimes share: who syncs it, and since when.
    role = "synced here" if dataset.get("role") == "syncing" else f"followed; synced by {by}"
    return f"{role} since {time.strftime('%H:%M:%S', time.localtime(since))}" if since else role


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return _elapsed(seconds)


def _elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


if __name__ == "__main__":
    sys.exit(main())
