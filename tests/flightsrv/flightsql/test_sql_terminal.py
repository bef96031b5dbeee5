"""``flightsrv sql`` at a real terminal (a pseudo-terminal): line editing and history through
readline, Ctrl-C drops the statement being typed and keeps the prompt, Ctrl-D leaves."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

from tests.flightsrv.flightsql.engines import Env
from tests.harness import wait_for

UP = b"\x1b[A"
CTRL_C = b"\x03"
CTRL_D = b"\x04"
KEY_PAUSE_S = 0.3


class Terminal:
    """A process on a pseudo-terminal it has as its controlling terminal, as in a shell."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            os.execve(argv[0], argv, env)
        self.screen = b""

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def interrupt(self) -> None:
        """Ctrl-C as a person presses it: after readline waits for a key. CPython's readline
        acts on a SIGINT that lands between drawing its prompt (or echoing a key) and waiting
        for the next key only when that next key comes."""
        time.sleep(KEY_PAUSE_S)
        self.type(CTRL_C)

    def wait_for(self, text: bytes, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.screen.count(text) < count:
            left = deadline - time.monotonic()
            assert left > 0, (
                f"{text!r} x{count} not seen in:\n{self.screen.decode(errors='replace')}"
            )
            if select.select([self.fd], [], [], left)[0]:
                try:
                    self.screen += os.read(self.fd, 65536)
                except OSError:  # the child is gone
                    break

    def exit_status(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        raise AssertionError(f"still running:\n{self.screen.decode(errors='replace')}")

    def close(self) -> None:
        """Kill the child if it is still running (a failed test)."""
        if os.waitpid(self.pid, os.WNOHANG)[0] == 0:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


def test_up_arrow_recalls_history_and_ctrl_c_keeps_the_prompt(env: Env, tmp_path: Path) -> None:
    environ = {**os.environ, "HOME": str(tmp_path), "TERM": "xterm"}
    term = Terminal([sys.executable, "-m", "flightsrv", "sql", "--uri", env.uri], environ)
    try:
        term.wait_for(b"sql> ")
        term.type(b"SELECT 40 + 2 AS answer;\r")
        term.wait_for(b"Time: ")
        term.wait_for(b"sql> ", count=2)  # readline reads again: the Up key is its to edit
        term.type(UP + b"\r")  # the same query again, edited by readline, not sent as ^[[A
        term.wait_for(b"Time: ", count=2)
        assert term.screen.count(b"| answer |") == 2 and term.screen.count(b" 42 |") == 2

        term.wait_for(b"sql> ", count=3)
        term.type(b"SELECT 5 AS five\r")  # a statement left open...
        term.wait_for(b"  -> ")
        term.interrupt()  # ...and dropped: the next one runs alone
        term.wait_for(b"sql> ", count=4)
        term.type(b"SELECT 6 AS six;\r")
        term.wait_for(b"Time: ", count=3)
        assert b"| six |" in term.screen and b"five" not in term.screen.split(b"| six |")[1]
        assert b"error" not in term.screen

        term.wait_for(b"sql> ", count=5)
        term.type(b"SELECT count(*) FROM range(100000000) a, range(100000000) b;\r")
        wait_for(lambda: len(env.server.running_queries) == 1, 10, "the query to run")
        term.interrupt()  # cancels the query, in the engine too, and keeps the prompt
        term.wait_for(b"cancelled")
        wait_for(lambda: not env.server.running_queries, 10, "the server to stop the query")
        term.wait_for(b"sql> ", count=6)
        term.type(b"SELECT 7")
        term.wait_for(b"SELECT 7")  # echoed by readline: a Ctrl-C now would not flush it unread
        term.interrupt()
        term.wait_for(b"sql> ", count=7)
        term.type(CTRL_D)
        assert term.exit_status() == 0
    except BaseException:
        term.close()
        raise
    history = (tmp_path / ".flightsrv_history").read_text()
    assert "SELECT 40 + 2 AS answer;" in history and "SELECT 6 AS six;" in history
