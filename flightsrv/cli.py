"""``flightsrv``: the command line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from flightsrv.config import ConfigError, load_config
from flightsrv.runtime import Endpoints, Runtime

DEFAULT_FLIGHT = "127.0.0.1:50051"
DEFAULT_HTTP = "127.0.0.1:8090"
EXIT_CONFIG = 2


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


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
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    runtime = Runtime(config, Endpoints(args.flight, args.http))
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    runtime.start()
    log = logging.getLogger("flightsrv")
    log.info(
        "serving %d dataset(s): Flight SQL on grpc://%s:%d, HTTP on http://%s:%d",
        len(config.datasets),
        args.flight[0],
        runtime.flight.port,
        args.http[0],
        runtime.http.port,
    )
    while not stopping.wait(0.5):
        pass
    log.info("stopping")
    runtime.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
