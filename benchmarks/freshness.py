"""End-to-end freshness: a write acknowledged by DynamoDB → the row visible through Flight SQL.

The emulator (moto in server mode, its own process) holds an ``orders`` table with a stream;
the runtime (``flightsrv run``, its own process) mirrors it into a file-mode DuckDB, as the
demo spicepod does. A writer thread changes items at a fixed rate, each carrying a sequence
number ``seq`` and recording when DynamoDB acknowledged it; a reader thread polls through ADBC
(``SELECT seq FROM orders WHERE seq > ?``, prepared) and notes when each ``seq`` first shows.
Latency = first seen − acknowledged, so it includes the stream poll wait, GetRecords, the
apply and commit, and the reader's own poll period (about 5 ms plus a query).
"""

from __future__ import annotations

import random
import threading
import time
import warnings
from dataclasses import dataclass, field

from benchmarks.bodies import item
from benchmarks.common import Config, Section, Target, median, percentile, table
from benchmarks.processes import Emulator, Runtime, dynamodb_dataset

INTERVALS = (("100ms", 0.1), ("1s", 1.0))
WRITES_PER_S = 20
TARGET_SLACK_S = 0.25
READER_PAUSE_S = 0.005
WARMUP_S = 0.5


@dataclass
class Observed:
    acked: dict[int, float] = field(default_factory=dict)  # seq → wall time of the write's ack
    sent: dict[int, float] = field(default_factory=dict)  # seq → wall time the write was sent
    seen: dict[int, float] = field(default_factory=dict)  # seq → wall time first visible
    queries: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Writer:
    """How writes are spaced: every ``1 / rate`` s, or at random gaps (an idle stream)."""

    name: str
    min_gap_s: float
    max_gap_s: float

    def gap(self, rng: random.Random) -> float:
        return rng.uniform(self.min_gap_s, self.max_gap_s)


STEADY = Writer(f"{WRITES_PER_S} writes/s", 1 / WRITES_PER_S, 1 / WRITES_PER_S)
SPARSE = Writer("sparse (a write every 0.8–1.6 s)", 0.8, 1.6)


def _writer(
    emulator: Emulator,
    seed_keys: int,
    first_seq: int,
    until: float,
    obs: Observed,
    writer: Writer,
) -> None:
    client = emulator.client()
    rng = random.Random(first_seq)
    due = time.time()
    k = 0
    while True:
        if due > until:
            return
        time.sleep(max(0.0, due - time.time()))
        due += writer.gap(rng)
        seq = first_seq + k
        body = item(rng, seq % seed_keys, seq)
        sent = time.time()
        body["seq"] = {"N": str(seq)}
        body["written_at"] = {"N": f"{sent:.6f}"}
        try:
            client.put_item(TableName="orders", Item=body)
        except Exception as e:  # noqa: BLE001 - recorded and reported, the run goes on
            obs.errors.append(f"put_item: {e}")
            k += 1
            continue
        obs.acked[seq] = time.time()
        obs.sent[seq] = sent
        k += 1


def _reader(uri: str, first_seq: int, stop: threading.Event, obs: Observed) -> None:
    import adbc_driver_flightsql.dbapi as flightsql

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Cannot disable autocommit": read-only server
        conn = flightsql.connect(uri)
    floor = first_seq - 1  # every seq at or below this one has been seen
    try:
        with conn.cursor() as cur:
            while not stop.is_set():
                try:
                    cur.execute("SELECT seq FROM orders WHERE seq > ?", (floor,))
                    found = cur.fetch_arrow_table().column("seq").to_pylist()
                except Exception as e:  # noqa: BLE001 - reported; polling goes on
                    obs.errors.append(f"query: {e}")
                    time.sleep(0.1)
                    continue
                now = time.time()
                obs.queries += 1
                for seq in found:
                    obs.seen.setdefault(seq, now)
                while floor + 1 in obs.seen:
                    floor += 1
                time.sleep(READER_PAUSE_S)
    finally:
        conn.close()


def measure(
    runtime: Runtime,
    emulator: Emulator,
    seed_keys: int,
    first_seq: int,
    duration: float,
    writer: Writer,
) -> Observed:
    obs = Observed()
    stop = threading.Event()
    reader = threading.Thread(target=_reader, args=(runtime.uri, first_seq, stop, obs))
    reader.start()
    time.sleep(0.1)
    until = time.time() + WARMUP_S + duration
    _writer(emulator, seed_keys, first_seq, until, obs, writer)
    deadline = time.time() + 15
    while time.time() < deadline and not set(obs.acked) <= set(obs.seen):
        time.sleep(0.05)
    stop.set()
    reader.join(30)
    return obs


def run(cfg: Config) -> Section:
    section = Section("End-to-end freshness: write acknowledged → visible through Flight SQL")
    duration = cfg.seconds(12, 1.5)
    sparse = cfg.seconds(16, 2)
    seed_keys = cfg.size(1_000, 100)
    rows = []
    emulator = Emulator(cfg.workdir)
    try:
        emulator.create_table("orders")
        rng = random.Random(7)
        seeds = []
        for k in range(seed_keys):
            seed = item(rng, k, 0)
            seed["seq"] = {"N": "-1"}
            seed["written_at"] = {"N": "0.5"}
            seeds.append(seed)
        emulator.put_items("orders", seeds)
        for index, (interval, interval_s) in enumerate(INTERVALS):
            dataset = dynamodb_dataset(
                "orders", emulator.url, scan_interval=interval, ready_lag="2s"
            )
            with Runtime(cfg.workdir / f"freshness-{interval}", [dataset]) as runtime:
                runtime.wait_ready()
                for w, (writer, seconds) in enumerate(((STEADY, duration), (SPARSE, sparse))):
                    first_seq = 1_000_000 * (2 * index + w + 1)
                    obs = measure(runtime, emulator, seed_keys, first_seq, seconds, writer)
                    windows = cfg.runs if writer is STEADY else 1
                    row, target = _summarise(obs, interval, interval_s, windows, writer)
                    rows.append(row)
                    section.targets.append(target)
                    section.headline.append(
                        (
                            f"freshness p50 / p99, scan_interval {interval}, {writer.name}",
                            f"{row[4]} / {row[6]} ms",
                        )
                    )
                    print(" | ".join(map(str, row)), flush=True)
                    if obs.errors:
                        section.add(
                            "",
                            f"Errors ({interval}, {writer.name}): {len(obs.errors)}, "
                            f"first: {obs.errors[0]}",
                        )
    finally:
        emulator.stop()
    section.add(
        "",
        "Writes are `PutItem`s of 20-attribute items on "
        f"{seed_keys:,} existing keys (MODIFY records): {STEADY.name} for {duration:.0f} s, "
        f"then {SPARSE.name} for {sparse:.0f} s, each after a {WARMUP_S:g} s warm-up; one "
        "runtime process per `scan_interval`, DuckDB in file mode. Steady writes: the "
        f"percentiles are computed in each of {cfg.runs} consecutive windows of equal length "
        "and the median over windows is shown, then the percentiles of all writes pooled. "
        "Sparse writes are too few for windows: one window.",
        "",
        *table(
            (
                "scan_interval",
                "writer",
                "writes",
                "not seen",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "pooled p50 / p95 / p99 / max ms",
                "PutItem ack p50 ms",
                "target p99",
            ),
            rows,
        ),
        "",
        "*Latency* runs from the moment `PutItem` returned to the end of the first Flight SQL "
        "query that returned the row; the reader polls every ~5 ms, so the figures include "
        "up to one reader query (a few ms) on top of the runtime's own delay.",
    )
    return section


def _summarise(
    obs: Observed, interval: str, interval_s: float, windows: int, writer: Writer
) -> tuple[list[object], Target]:
    acked = sorted(obs.acked.items(), key=lambda kv: kv[1])
    start = acked[0][1] + WARMUP_S if acked else 0.0
    measured = [(seq, t) for seq, t in acked if t >= start]
    latencies = [(t, 1000 * (obs.seen[seq] - t)) for seq, t in measured if seq in obs.seen]
    missing = sum(1 for seq, _ in measured if seq not in obs.seen)
    end = measured[-1][1] if measured else start
    span = max(end - start, 1e-9) / windows
    per_window: list[list[float]] = [[] for _ in range(windows)]
    for t, ms in latencies:
        per_window[min(int((t - start) / span), windows - 1)].append(max(ms, 0.0))
    per_window = [w for w in per_window if w]
    pooled = [max(ms, 0.0) for _, ms in latencies]
    put = [1000 * (obs.acked[s] - obs.sent[s]) for s, _ in measured]

    def med(q: float) -> float:
        return median([percentile(w, q) for w in per_window]) if per_window else float("nan")

    p99 = med(99)
    goal_ms = 1000 * interval_s + 1000 * TARGET_SLACK_S
    row: list[object] = [
        interval,
        writer.name,
        len(measured),
        missing,
        f"{med(50):,.0f}",
        f"{med(95):,.0f}",
        f"{p99:,.0f}",
        " / ".join(f"{percentile(pooled, q):,.0f}" for q in (50, 95, 99, 100)),
        f"{percentile(put, 50):,.1f}",
        f"≤ {goal_ms:,.0f} ms",
    ]
    met = p99 <= goal_ms and missing == 0
    target = Target(
        f"freshness p99, scan_interval {interval}, {writer.name}",
        f"≤ scan_interval + 250 ms = {goal_ms:,.0f} ms",
        f"{p99:,.0f} ms (pooled {percentile(pooled, 99):,.0f} ms; {missing} not seen)",
        met,
    )
    return row, target
