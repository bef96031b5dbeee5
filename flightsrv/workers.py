"""``flightsrv run --workers N``: Flight SQL answered by N processes on one port.

One Python process answers queries on about one core (the statement check, planning and result
encoding hold the GIL). With ``--workers N`` the first process syncs the datasets and serves as
before, and N-1 worker processes serve the same datasets, following what the first commits
(:class:`sync.pipeline.DatasetSync` with ``follow_only``): they read neither tables nor streams.

Every process listens on the public port with ``SO_REUSEPORT``, so the kernel spreads client
connections across them. Arrow's Flight server does not let its gRPC listener share a port (it
turns ``SO_REUSEPORT`` off, so that a busy port fails loudly), so each process's Flight server
listens on a private loopback port and a :class:`PortRelay` hands it the connections the kernel
gave that process; the kernel moves the bytes (``splice``), not Python.

Only engines another process may read qualify: PostgreSQL, SQLite files (WAL) and Cayenne
files. DuckDB allows one process per file, and an in-memory engine lives in one process: with
such a dataset the runtime says so at start and serves from one process.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from sync.settings import DatasetSettings

log = logging.getLogger(__name__)

SHAREABLE_ENGINES = frozenset({"postgres", "sqlite", "cayenne"})
CHUNK = 1 << 16
BACKLOG = 512
RESTART_DELAY_S = (1.0, 30.0)  # a worker that exits is started again after this, doubling


def unshareable(datasets: Sequence[DatasetSettings]) -> str | None:
    """Why these datasets cannot be served by several processes (None: they can)."""
    for dataset in datasets:
        acc = dataset.acceleration
        if acc.engine == "duckdb":
            return (
                f"dataset {dataset.name} is on DuckDB, which allows one process per database "
                "file (put it on postgres, sqlite or cayenne to serve it from several)"
            )
        if acc.mode == "memory" and acc.engine != "postgres":
            return (
                f"dataset {dataset.name} is held in memory, inside one process (use mode: file "
                "to serve it from several)"
            )
        if acc.engine not in SHAREABLE_ENGINES:
            return f"dataset {dataset.name}'s engine {acc.engine} is read by one process only"
    return None


class PortRelay:
    """Accepts connections on ``public`` (shared with the other workers by ``SO_REUSEPORT``)
    and relays each, whole, to this process's Flight server at ``private``.

    The port is bound only by :meth:`start`: from then on the kernel gives this process its
    share of new connections, so a worker starts once its datasets are Ready.
    """

    def __init__(self, public: tuple[str, int], private: tuple[str, int]) -> None:
        self._public = public
        self._private = private
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Listen on the public port and relay what comes.

        Raises:
            OSError: the port cannot be bound.
        """
        host, port = self._public
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(address)
        listener.listen(BACKLOG)
        with self._lock:
            if self._closed:
                listener.close()
                return
            self._listener = listener
        threading.Thread(
            target=self._accept, args=(listener,), name="relay-accept", daemon=True
        ).start()

    def close(self) -> None:
        """Stop accepting and cut the connections being relayed; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            opened, self._open = self._open, set()
            listener, self._listener = self._listener, None
        if listener is not None:
            _shut(listener)
            listener.close()
        for sock in opened:
            _shut(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self._private)
            except OSError as e:
                log.warning("relay: the Flight server did not take a connection: %s", e)
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._open.update((client, server))
            ends = [threading.Event(), threading.Event()]
            for (source, sink), done in zip(
                ((client, server), (server, client)), ends, strict=True
            ):
                threading.Thread(
                    target=self._pump, args=(source, sink, done, ends), daemon=True
                ).start()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        done: threading.Event,
        ends: list[threading.Event],
    ) -> None:
        """Move bytes from ``source`` to ``sink`` through a pipe until ``source`` ends."""
        pipe_out, pipe_in = os.pipe()
        try:
            while True:
                moved = os.splice(source.fileno(), pipe_in, CHUNK)
                if moved == 0:
                    break
                while moved:
                    moved -= os.splice(pipe_out, sink.fileno(), moved)
        except OSError:
            pass  # either end went away: the other pump ends too
        finally:
            os.close(pipe_out)
            os.close(pipe_in)
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            done.set()
            if all(end.is_set() for end in ends):
                with self._lock:
                    self._open.discard(source)
                    self._open.discard(sink)
                source.close()
                sink.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class WorkerPool:
    """The N-1 worker processes of ``--workers N``: ``command`` each, started again (after a
    growing delay) when one exits, stopped with SIGTERM and then SIGKILL. A worker says it
    serves by writing to a pipe it is given (``--ready-fd``)."""

    def __init__(self, command: Sequence[str], count: int) -> None:
        self._command = list(command)
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self._serving: set[int] = set()  # pids that said they serve
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="workers", daemon=True)

    def status(self) -> list[dict[str, object]]:
        """Each running worker's pid, and whether it serves yet (its datasets Ready)."""
        running = [p.pid for p in self._procs if p is not None and p.poll() is None]
        return [{"pid": pid, "serving": pid in self._serving} for pid in running]

    def start(self) -> None:
        for index in range(len(self._procs)):
            self._procs[index] = self._spawn(index)
        self._thread.start()

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        read_end, write_end = os.pipe()
        try:
            proc = subprocess.Popen(
                [*self._command, "--worker-index", str(index + 1), "--ready-fd", str(write_end)],
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)
        threading.Thread(target=self._await_serving, args=(proc.pid, read_end), daemon=True).start()
        log.info("worker %d started (pid %d)", index + 1, proc.pid)
        return proc

    def _await_serving(self, pid: int, read_end: int) -> None:
        try:
            if os.read(read_end, 1):
                self._serving.add(pid)
        finally:
            os.close(read_end)

    def _watch(self) -> None:
        delays = [RESTART_DELAY_S[0]] * len(self._procs)
        while not self._stop.wait(0.5):
            for index, proc in enumerate(self._procs):
                if proc is None or proc.poll() is None:
                    continue
                log.error(
                    "worker %d (pid %d) exited with status %s; starting it again in %.0f s",
                    index + 1,
                    proc.pid,
                    proc.returncode,
                    delays[index],
                )
                if self._stop.wait(delays[index]):
                    return
                delays[index] = min(delays[index] * 2, RESTART_DELAY_S[1])
                self._procs[index] = self._spawn(index)

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM every worker, SIGKILL those still running after ``timeout``; idempotent."""
        self._stop.set()
        procs = [p for p in self._procs if p is not None and p.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def worker_command(argv: Sequence[str]) -> list[str]:
    """The command line of a worker: this one's, less ``--workers``, plus ``--worker``."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        kept.append(arg)
    return [sys.executable, "-m", "flightsrv", *kept, "--worker"]


def notify_serving(fd: int) -> None:
    """In a worker: tell the first process this one serves (see :class:`WorkerPool`)."""
    os.write(fd, b"1")
    os.close(fd)


def exit_with_parent() -> None:
    """In a worker: SIGTERM this process once the process that started it is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
