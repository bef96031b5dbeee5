"""Where the data path spends its time: cProfile of change apply and of bootstrap (DuckDB), on
the same replayed bodies as :mod:`benchmarks.apply`.

cProfile sees one thread, so the steps the runtime overlaps in threads (parsing in the reader's
threads while the sync thread converts and applies) run here one after the other in this
thread, with the same functions and the same batch sizes.

cProfile sees Python functions and built-in C functions. Native code it cannot see (Cython
and extension-module methods: pyarrow's JSON reader, DuckDB statements) counts in the *self*
time of the Python function that calls it: the self time of the ``rawparse`` function calling
pyarrow's JSON reader is that reader; an accelerator's ``apply`` self time is mostly DuckDB
executing its statements.
"""

from __future__ import annotations

import cProfile
import pstats
from pathlib import Path

from benchmarks.apply import INFER_MAX, KEY_SPEC, Trial, load_pages, settings
from benchmarks.bodies import get_records_bodies, scan_bodies
from benchmarks.common import Config, Section, table
from benchmarks.replay import ReplayScan
from sync.accelerators.base import open_accelerator
from sync.bootstrap import apply_load
from sync.changes import ChangeBatch, Checkpoint, ShardPosition
from sync.dynamodb.load import scan_batches
from sync.dynamodb.rawparse import parse_get_records, parse_scan
from sync.dynamodb.records import stream_rows
from sync.dynamodb.stream import GET_RECORDS_LIMIT, MAX_ROUND_RECORDS
from sync.dynamodb.typeoptions import TypeOptions
from sync.settings import AccelerationSettings

ROOT = Path(__file__).resolve().parent.parent
TOP = 15


def _name(key: tuple[str, int, str]) -> str:
    file, line, func = key
    if file == "~":  # a C function: cProfile names it "<built-in method …>"
        return func.strip("<>")
    path = Path(file)
    try:
        where = str(path.resolve().relative_to(ROOT))
    except ValueError:
        parts = path.parts
        where = "/".join(
            parts[parts.index("site-packages") + 1 :] if "site-packages" in parts else parts[-2:]
        )
    return f"{func} ({where}:{line})"


CHECKPOINT = Checkpoint("arn:stream", (ShardPosition("arn:stream", "shard-1", None, "1"),))


def serial_changes(
    acc_settings: AccelerationSettings, scan: list[bytes], bodies: list[bytes]
) -> Trial:
    """Change apply in one thread: parse a round's bodies, convert, apply with a checkpoint."""
    acc = open_accelerator(acc_settings)
    spec = load_pages(acc, ReplayScan(scan[:1]))
    types = TypeOptions(support=acc.type_support)
    per_round = MAX_ROUND_RECORDS // GET_RECORDS_LIMIT

    def run() -> int:
        nonlocal spec
        records = 0
        for start in range(0, len(bodies), per_round):
            pages = [parse_get_records(body) for body in bodies[start : start + per_round]]
            count = sum(page.count for page in pages)
            rows, spec, _ = stream_rows(spec, pages, types)
            acc.apply("orders", spec, ChangeBatch(rows, CHECKPOINT, count))
            records += count
        return records

    return run, acc.close


def serial_bootstrap(acc_settings: AccelerationSettings, bodies: list[bytes]) -> Trial:
    """Bootstrap in one thread: each Scan body parsed, batched by ``scan_batches`` and
    applied by ``apply_load``."""
    acc = open_accelerator(acc_settings)

    def run() -> int:
        acc.create_table(KEY_SPEC)
        pages = (parse_scan(body).items for body in bodies)
        types = TypeOptions(support=acc.type_support)
        batches = scan_batches(pages, KEY_SPEC, types, INFER_MAX)
        _, items = apply_load(acc, "orders", KEY_SPEC, batches)
        return items

    return run, acc.close


def profile(trial: Trial) -> tuple[pstats.Stats, int]:
    run, cleanup = trial
    profiler = cProfile.Profile()
    try:
        profiler.enable()
        records = run()
        profiler.disable()
    finally:
        cleanup()
    return pstats.Stats(profiler), records


# The stages each benchmark loop calls one after the other (their times do not overlap).
PARSE = "parse (rawparse: pyarrow's JSON reader)"
CONVERT = "convert (records/convert: types, columns, JSON text)"
APPLY = "apply (the accelerator: one transaction per round or batch)"
STAGES = {
    "Change apply": {
        PARSE: (("rawparse.py", "parse_get_records"),),
        CONVERT: (("records.py", "stream_rows"),),
        APPLY: (("accelerators/sqlengine.py", "apply"),),
    },
    "Bootstrap": {
        PARSE: (("rawparse.py", "parse_scan"),),
        CONVERT: (
            ("records.py", "evolve_spec"),
            ("records.py", "image_rows"),
            ("infer.py", "infer_columns"),
        ),
        APPLY: (("accelerators/sqlengine.py", "apply"),),
    },
}


def phases(stats: pstats.Stats, stages: dict[str, tuple[tuple[str, str], ...]]) -> str:
    """'stage share, …' of the profiled time, from the stages' cumulative times."""
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in entries.values())
    shares = []
    for label, functions in stages.items():
        spent = sum(
            ct
            for (file, _, func), (_, _, _, ct, _) in entries.items()
            if any(file.endswith(f) and func == name for f, name in functions)
        )
        shares.append(f"{label} {100 * spent / total:,.0f} %")
    return "; ".join(shares)


def tables_for(
    stats: pstats.Stats, records: int, stages: dict[str, tuple[tuple[str, str], ...]]
) -> list[str]:
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in entries.values())
    by_self = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:TOP]
    ours = [kv for kv in entries.items() if kv[0][0].startswith(str(ROOT / "sync"))]
    by_cumulative = sorted(ours, key=lambda kv: kv[1][3], reverse=True)[:TOP]
    lines = [
        f"{records:,} records, {total:,.2f} s profiled ({1e6 * total / records:,.1f} ms per "
        "1,000 records under cProfile, which slows Python calls).",
        "",
        f"Stages: {phases(stats, stages)}.",
        "",
        "Self time (the function's own code, or the native call):",
        "",
        *table(
            ("self s", "share", "calls", "function"),
            [
                (f"{tt:,.3f}", f"{100 * tt / total:,.1f} %", f"{nc:,}", _name(key))
                for key, (_, nc, tt, _, _) in by_self
            ],
        ),
        "",
        "Cumulative time of the product's own functions (`sync/`):",
        "",
        *table(
            ("cumulative s", "share", "calls", "function"),
            [
                (f"{ct:,.3f}", f"{100 * ct / total:,.1f} %", f"{nc:,}", _name(key))
                for key, (_, nc, _, ct, _) in by_cumulative
            ],
        ),
    ]
    return lines


def run(cfg: Config) -> Section:
    section = Section("Profiles: what bounds change apply and bootstrap")
    n_items = cfg.size(40_000, 4_000)
    n_records = cfg.size(40_000, 2_000)
    scan = scan_bodies(n_items)
    records = get_records_bodies(n_records, keys=n_records // 4)
    acc = settings("duckdb", None)
    section.add(
        "",
        f"cProfile, DuckDB in memory mode, bodies made as in the first section ({n_items:,} "
        f"items; {n_records:,} stream records). One profiled run each. *Stages*: the "
        "cumulative share of the loop's three steps, which run one after the other.",
    )
    for title, trial in (
        ("Change apply", serial_changes(acc, scan, records)),
        ("Bootstrap", serial_bootstrap(acc, scan)),
    ):
        stats, count = profile(trial)
        section.add("", f"### {title}", "", *tables_for(stats, count, STAGES[title]))
    return section
