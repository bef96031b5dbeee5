"""Sampling profiles of another process (the runtime) with py-spy, summarised as text."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")
# Top frames that mean the thread was waiting, however py-spy classified it.
_WAITING = ("select (selectors.py)", "wait (threading.py)", "_recv_into", "accept (socket.py)")


def py_spy() -> str | None:
    """The py-spy executable (next to this Python, or on PATH), or None."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, rate: int = 250) -> subprocess.Popen[bytes] | None:
    """Start sampling ``pid`` for ``seconds`` (collapsed stacks into ``out``); None when py-spy
    is missing. Sampling does not pause the process (``--nonblocking``)."""
    exe = py_spy()
    if exe is None:
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def summarise(collapsed: Path, top: int = 12, groups: dict[str, str] | None = None) -> list[str]:
    """Markdown lines: the functions most often on the stack (inclusive) and at its top (self),
    as shares of the samples in which the process was running; first, for each of ``groups``
    (label → a function name), the share of samples with that function on the stack."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        if any(w in frames[-1] for w in _WAITING):
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return ["(no samples)"]
    lines = [
        f"{total:,} samples of running threads (waits in select, lock and socket calls left out).",
        "",
    ]
    if groups:
        shares = []
        for label, function in groups.items():
            n = sum(c for f, c in inclusive.items() if f.startswith(function + " ("))
            shares.append(f"{label} {100 * n / total:,.0f} %")
        lines += [f"By call: {'; '.join(shares)}.", ""]
    lines += ["On the stack (inclusive):", "", "```"]
    lines += [f"{100 * n / total:5.1f} %  {f}" for f, n in inclusive.most_common(top)]
    lines += ["```", "", "At the top of the stack (self):", "", "```"]
    lines += [f"{100 * n / total:5.1f} %  {f}" for f, n in own.most_common(top)]
    lines += ["```"]
    return lines
