"""Memory: the runtime process's peak resident set (VmHWM) while it bootstraps a large table and
while it streams a large result, each at two sizes, to show whether it grows with the data.

Bootstrap: the runtime (``flightsrv run``) scans ``orders`` from :mod:`benchmarks.fakedynamo`
— a stand-in endpoint serving pre-serialised Scan pages of realistic items, because the
emulator is far too slow for a million items — into a file-mode DuckDB, exactly as it would
from DynamoDB: parallel segments, the bounded page queue, parse, convert, staging table, swap.
The peak is the process's VmHWM once the dataset is Ready (it covers start-up too).

Result: the runtime serves the ``flight_rows`` mirror of :mod:`benchmarks.flight`; the peak is
reset (``/proc/<pid>/clear_refs``) before each ADBC fetch and read after it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from benchmarks import flight, tables
from benchmarks.common import (
    Config,
    Section,
    Target,
    mib,
    proc_status_kb,
    reset_peak_rss,
    table,
)
from benchmarks.processes import Runtime

QUARTERS = 4
SAMPLE_S = 0.1  # RSS sampling period during a bootstrap


def bootstrap_peak(cfg: Config, items: int) -> dict[str, Any]:
    """The runtime's peak RSS over a bootstrap of ``items``, and the highest RSS sampled
    while each quarter of the items was being loaded (``quarters_kb``): whether memory grows
    with the items loaded so far, within one run."""
    workdir = cfg.workdir / f"memory-bootstrap-{items}"
    mirror = workdir / "orders.duckdb"
    with tables.FakeDynamoProcess(workdir, {"orders": items}) as fake:
        dataset = tables.mirror_dataset("orders", fake.url, mirror)
        with Runtime(workdir / "runtime", [dataset]) as rt:
            began = time.monotonic()
            quarters = [0] * QUARTERS
            done = threading.Event()
            sampler = threading.Thread(target=_sample, args=(rt, items, quarters, done))
            sampler.start()
            try:
                ready_s = rt.wait_ready(timeout=600)
            finally:
                done.set()
                sampler.join()
            elapsed = time.monotonic() - began
            status = rt.datasets()[0]
            peak = proc_status_kb(rt.pid, "VmHWM")
            rss = proc_status_kb(rt.pid, "VmRSS")
    mirror.unlink(missing_ok=True)
    return {
        "items": items,
        "rows": float(status.get("rows") or 0),
        "ready_s": ready_s,
        "items_per_s": items / elapsed,
        "peak_kb": peak,
        "rss_kb": rss,
        "quarters_kb": quarters,
    }


def _sample(rt: Runtime, items: int, quarters: list[int], done: threading.Event) -> None:
    """Fill ``quarters`` with the highest RSS seen while each quarter of the items loaded."""
    while not done.wait(SAMPLE_S):
        try:
            progress = (rt.datasets()[0].get("bootstrap") or {}).get("items")
            rss = proc_status_kb(rt.pid, "VmRSS")
        except (OSError, ValueError, LookupError):
            continue  # the runtime is starting or gone: nothing to read this time
        if progress is None:
            continue
        quarter = min(QUARTERS - 1, int(progress * QUARTERS / items))
        quarters[quarter] = max(quarters[quarter], rss)


@dataclass(frozen=True)
class Fetch:
    rows: int
    nbytes: int  # Arrow bytes received
    before_kb: int  # the runtime's RSS just before the fetch
    peak_kb: int  # its peak RSS during the fetch (VmHWM, reset just before)
    after_kb: int  # its RSS just after

    @property
    def transient_kb(self) -> int:
        """Memory held only while the result streamed (the peak above what stays after)."""
        return self.peak_kb - self.after_kb


def result_peaks(cfg: Config, rows: int, sizes: list[int]) -> tuple[int, list[Fetch]]:
    """The runtime's RSS before any query, then one :class:`Fetch` per size, in order."""
    workdir = cfg.workdir / "memory-result"
    mirror, _ = flight.flight_mirror(cfg, rows)
    fetches = []
    with (
        tables.FakeDynamoProcess(workdir, {flight.TABLE: rows}, {flight.TABLE: "id:N"}) as fake,
        Runtime(workdir / "runtime", [tables.mirror_dataset(flight.TABLE, fake.url, mirror)]) as rt,
    ):
        rt.wait_ready()
        idle = proc_status_kb(rt.pid, "VmRSS")
        conn = flight.adbc_connect(rt.uri)
        try:
            for size in sizes:
                read = flight.adbc_read(conn, f"{flight.QUERY} WHERE id < {size}")
                before = proc_status_kb(rt.pid, "VmRSS")
                if not reset_peak_rss(rt.pid):
                    raise RuntimeError("cannot reset VmHWM (/proc/<pid>/clear_refs not writable)")
                got, nbytes = read()
                assert got == size, (got, size)
                peak = proc_status_kb(rt.pid, "VmHWM")
                fetches.append(Fetch(size, nbytes, before, peak, proc_status_kb(rt.pid, "VmRSS")))
        finally:
            conn.close()
    return idle, fetches


def run(cfg: Config) -> Section:
    section = Section("Memory: peak RSS of the runtime process")
    big = cfg.size(1_000_000, 20_000)
    boots = [bootstrap_peak(cfg, n) for n in (big // 4, big)]
    for b in boots:
        print(f"bootstrap {b['items']:,.0f}: peak {mib(int(b['peak_kb']))}", flush=True)
    rows = cfg.size(10_000_000, 100_000)
    idle, fetches = result_peaks(cfg, rows, [rows // 4, rows, rows // 4, rows])
    for f in fetches:
        print(f"result {f.rows:,}: peak {mib(f.peak_kb)}, after {mib(f.after_kb)}", flush=True)

    small_b, big_b = boots
    section.add(
        "",
        "### During a bootstrap",
        "",
        "The runtime bootstraps `orders` (18-attribute items in Scan pages of 2,000, "
        "parallel segments as `auto` sizes them) from the stand-in endpoint into a file-mode "
        "DuckDB; VmHWM read once the dataset is Ready. One run per size: each is a whole "
        "runtime start. *items/s* counts from the runtime's HTTP port answering to Ready. "
        f"*By quarter*: the highest RSS sampled (every {SAMPLE_S:g} s) while the first, "
        "second, third and last quarter of the items were loaded.",
        "",
        *table(
            (
                "items",
                "peak RSS (VmHWM)",
                "by quarter of the items",
                "RSS when Ready",
                "Ready after",
                "items/s end to end",
            ),
            [
                (
                    f"{b['items']:,.0f}",
                    mib(int(b["peak_kb"])),
                    " / ".join(mib(q) if q else "—" for q in b["quarters_kb"]),
                    mib(int(b["rss_kb"])),
                    f"{b['ready_s']:,.1f} s",
                    f"{b['items_per_s']:,.0f}",
                )
                for b in boots
            ],
        ),
    )
    growth_b = big_b["peak_kb"] / small_b["peak_kb"]
    # The second pass reads blocks DuckDB already holds: what it adds is the stream alone.
    warm_small, warm_big = fetches[2], fetches[3]
    growth_r = warm_big.peak_kb / warm_small.peak_kb
    section.add(
        "",
        "### During a large result",
        "",
        f"ADBC fetches of `{flight.QUERY} WHERE id < n` from the `flight_rows` mirror "
        f"({rows:,} rows, file-mode DuckDB), in the order shown; the runtime's RSS before any "
        f"query was {mib(idle)}. VmHWM is reset just before each fetch. *transient*: the peak "
        "above the RSS that stays after the fetch (what streaming the result cost).",
        "",
        *table(
            ("fetch", "rows", "Arrow MB sent", "RSS before", "peak RSS", "RSS after", "transient"),
            [
                (
                    str(i + 1),
                    f"{f.rows:,}",
                    f"{f.nbytes / 1e6:,.0f}",
                    mib(f.before_kb),
                    mib(f.peak_kb),
                    mib(f.after_kb),
                    mib(f.transient_kb),
                )
                for i, f in enumerate(fetches)
            ],
        ),
        "",
        "What stays after a fetch is DuckDB's buffer pool keeping the blocks it read (the "
        "second pass over the same rows adds nothing): it grows with the data read, up to "
        "DuckDB's `memory_limit`, which the runtime leaves at DuckDB's default (80 % of the "
        "machine's RAM). The stream itself is bounded when the peaks of the second pass, "
        "same blocks cached, do not grow with the rows.",
    )
    section.targets += [
        Target(
            "bootstrap peak RSS bounded",
            "does not grow with the items",
            f"{mib(int(small_b['peak_kb']))} at {small_b['items']:,.0f} items, "
            f"{mib(int(big_b['peak_kb']))} at {big_b['items']:,.0f} ({growth_b:,.2f}×); "
            f"by quarter of the {big_b['items']:,.0f}: "
            + " / ".join(mib(q) if q else "—" for q in big_b["quarters_kb"]),
            growth_b <= 1.25,
        ),
        Target(
            "large-result peak RSS bounded",
            "does not grow with the rows",
            f"{mib(warm_small.peak_kb)} at {rows // 4:,} rows, {mib(warm_big.peak_kb)} at "
            f"{rows:,} ({growth_r:,.2f}×, blocks cached); first pass "
            f"{mib(fetches[0].peak_kb)} → {mib(fetches[1].peak_kb)} (DuckDB's cache filling)",
            growth_r <= 1.25,
        ),
    ]
    section.headline += [
        (
            f"runtime peak RSS, bootstrap of {big:,} items",
            f"{mib(int(big_b['peak_kb']))} ({growth_b:,.2f}× the {big // 4:,}-item figure)",
        ),
        (
            f"runtime bootstrap rate, {big:,} items, end to end",
            f"{big_b['items_per_s']:,.0f} items/s",
        ),
        (
            f"runtime peak RSS, {rows:,}-row result",
            f"{mib(warm_big.peak_kb)} ({growth_r:,.2f}× the {rows // 4:,}-row figure; "
            f"transient {mib(warm_big.transient_kb)})",
        ),
    ]
    return section
