"""What a dataset reports about itself: state, progress, lag, counters."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class State(StrEnum):
    STARTING = "starting"
    BOOTSTRAPPING = "bootstrapping"
    CATCHING_UP = "catching_up"  # bootstrap done (or resumed), lag not yet below ready_lag
    REBOOTSTRAPPING = "rebootstrapping"  # ready_before_load: old rows served during a reload
    READY = "ready"
    LAGGING = "lagging"  # was Ready, lag now above ready_lag; queries still served
    FOLLOWING = "following"  # another runtime syncs it; what it committed is not fresh yet
    ERROR = "error"
    STOPPED = "stopped"


QUERYABLE = frozenset({State.READY, State.LAGGING, State.REBOOTSTRAPPING})
SCANNING = frozenset({State.BOOTSTRAPPING, State.REBOOTSTRAPPING})  # bootstrap progress shown


@dataclass(frozen=True)
class BootstrapProgress:
    items: int
    expected: int  # DescribeTable ItemCount (approximate on AWS, refreshed every ~6 h)
    rate_per_s: float
    started_at: float

    @property
    def percent(self) -> float:
        return min(100.0, 100.0 * self.items / self.expected) if self.expected else 0.0

    @property
    def eta_s(self) -> float | None:
        if not self.rate_per_s or self.items >= self.expected:
            return None
        return (self.expected - self.items) / self.rate_per_s


@dataclass(frozen=True)
class DatasetStatus:
    name: str
    table: str
    engine: str
    mode: str
    state: State
    since: float  # epoch seconds the state was entered
    error: str | None
    lag_ms: int | None
    shards_active: int
    records_consumed: int
    errors_transient: int
    reinitializations: int
    bootstraps: int  # bootstrap scans run by this process
    last_checkpoint_at: float | None
    bootstrap: BootstrapProgress | None
    last_snapshot: tuple[str, float] | None = None  # (name, epoch seconds written)
    role: str = "syncing"  # or "following": another runtime (or process) syncs it
    synced_by: str | None = None  # the runtime holding the lease, on a shared engine
    synced_since: float | None = None  # epoch seconds it took the lease
    commits: int = 0  # transactions this process committed (batches, loads swapped in)

    def reason(self) -> str:
        """Why the dataset is not Ready, in words for a query's error message."""
        if self.state is State.BOOTSTRAPPING and self.bootstrap:
            return (
                f"dataset {self.name} is bootstrapping: {self.bootstrap.items} items scanned "
                f"({self.bootstrap.percent:.0f} % of about {self.bootstrap.expected})"
            )
        if self.state is State.ERROR:
            return f"dataset {self.name} is in error: {self.error}"
        if self.state is State.FOLLOWING:
            lag = f"{self.lag_ms / 1000:.1f} s" if self.lag_ms is not None else "unknown"
            by = self.synced_by or "no runtime at the moment"
            return (
                f"dataset {self.name} is synced by {by}; its committed data is not fresh yet "
                f"(lag {lag})"
            )
        if self.state is State.CATCHING_UP:
            lag = f"{self.lag_ms / 1000:.1f} s" if self.lag_ms is not None else "unknown"
            return f"dataset {self.name} is catching up with its stream (lag {lag})"
        return f"dataset {self.name} is {self.state.value}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        if self.bootstrap:
            data["bootstrap"]["percent"] = round(self.bootstrap.percent, 1)
            data["bootstrap"]["eta_s"] = self.bootstrap.eta_s
        return data
