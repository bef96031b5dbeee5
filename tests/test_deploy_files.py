"""``deploy/`` (Dockerfile, compose.yaml, spicepod.yaml) kept in step with the code it runs.

No Docker is needed: the files are parsed, and what they hand the runtime is checked by the
runtime's own code — the CLI's argument parser, ``load_config``, the HTTP server — so renaming
a flag, a spicepod key or the health endpoint fails here instead of in a deployment.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flightsrv import cli
from flightsrv.auth import ApiKeys
from flightsrv.config import load_config
from flightsrv.http import HttpServer

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RUNTIMES = ("runtime-1", "runtime-2", "runtime-3")
# Host variables compose.yaml needs and has no default for: the "Deployment files" section
# of README.md tells users to export them.
EXPORTED = {"AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
# Compose interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ..., or $VAR.
COMPOSE_VARIABLE = re.compile(r"\$(?:\{(\w+)(:?[-?+])?[^}]*\}|(\w+))")
# The spicepod's ${STORE:NAME} references; its only store reads the environment.
POD_REFERENCE = re.compile(r"\$\{\s*[\w-]+\s*:\s*([^\s{}:]+)\s*\}")


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _dockerfile() -> dict[str, str]:
    """Each instruction's argument text (continuation lines joined); the last one wins."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    lines = (line.strip() for line in text.splitlines())
    return dict(
        line.split(None, 1) for line in lines if line and not line.startswith("#") and " " in line
    )


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    actions = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [sub for action in actions for sub in action.choices.values()]


def _parse(args: list[str]) -> argparse.Namespace:
    """``args`` parsed by flightsrv's own parser; argparse's message is in the captured stderr."""
    parser = cli._parser()
    # Written in full: a flag renamed to a longer name must not pass as its abbreviation.
    for each in [parser, *_subparsers(parser)]:
        each.allow_abbrev = False
    try:
        return parser.parse_args(args)
    except SystemExit as e:
        pytest.fail(f"flightsrv {shlex.join(args)}: refused by flightsrv.cli (exit {e.code})")


def _runtime_args(service: dict[str, Any]) -> list[str]:
    assert "entrypoint" not in service, "the image's ENTRYPOINT is flightsrv"
    command = service.get("command") or json.loads(_dockerfile()["CMD"])
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def _ports(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(host, container) of each ``[IP:]HOST:CONTAINER`` mapping."""
    pairs = []
    for spec in service.get("ports", []):
        *_, host, container = str(spec).split("/")[0].split(":")
        pairs.append((int(host), int(container)))
    return pairs


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _deploy_docs() -> str:
    """README.md's "Deployment files" section."""
    text = (ROOT / "README.md").read_text()
    heading = re.search(r"^(#+) Deployment files\n", text, re.M)
    assert heading, "no 'Deployment files' section"
    section = text[heading.end() :]
    end = re.search(rf"^#{{1,{len(heading.group(1))}}} ", section, re.M)
    return section[: end.start()] if end else section


def test_compose_has_postgres_and_three_runtimes_from_the_dockerfile() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", *RUNTIMES}, sorted(services)
    assert services["postgres"]["image"].startswith("postgres:")
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    for name in RUNTIMES:
        service = services[name]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy", name
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
            DEPLOY / "Dockerfile"
        ), name


@pytest.mark.parametrize("name", RUNTIMES)
def test_runtime_command_is_one_the_cli_accepts(name: str) -> None:
    service = _compose()["services"][name]
    args = _parse(_runtime_args(service))
    assert args.command == "run"
    # The listeners must bind every interface for the published ports to reach them.
    listeners = {args.flight, args.http, args.metrics}
    assert {host for host, _ in listeners} == {"0.0.0.0"}, listeners
    assert {container for _, container in _ports(service)} == {port for _, port in listeners}
    mounts = {target: source for source, target, *_ in (v.split(":") for v in service["volumes"])}
    source = mounts.get(str(args.config))
    assert source, f"{name}: nothing mounted at --config {args.config}"
    assert (DEPLOY / source).is_file(), f"{name}: {source} is not in deploy/"


def test_host_ports_are_distinct() -> None:
    hosts = [host for s in _compose()["services"].values() for host, _ in _ports(s)]
    assert len(hosts) == len(set(hosts)), sorted(hosts)


def test_host_variables_have_defaults_or_are_documented() -> None:
    required = set()
    for text in _strings(_compose()):
        for braced, operator, bare in COMPOSE_VARIABLE.findall(text.replace("$$", "")):
            if operator not in ("-", ":-"):
                required.add(braced or bare)
    assert required == EXPORTED, f"taken from the host without a default: {sorted(required)}"
    docs = _deploy_docs()
    assert [v for v in sorted(EXPORTED) if v not in docs] == []


def test_documented_commands_are_ones_the_cli_accepts() -> None:
    commands = [
        shlex.split(line, comments=True)[1:]
        for line in _deploy_docs().splitlines()
        if line.startswith("flightsrv ")
    ]
    assert commands, "the section shows no flightsrv command"
    for args in commands:
        _parse(args)


def test_dockerfile_runs_flightsrv_and_probes_a_public_route() -> None:
    docker = _dockerfile()
    assert json.loads(docker["ENTRYPOINT"]) == ["flightsrv"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["flightsrv"] == "flightsrv.cli:main"
    args = _parse(json.loads(docker["CMD"]))
    listening = {args.flight[1], args.http[1], args.metrics[1]}
    assert {int(p) for p in docker["EXPOSE"].split()} == listening, docker["EXPOSE"]
    probe_json = re.search(r"\bCMD\s+(\[.*\])", docker["HEALTHCHECK"])
    assert probe_json, "HEALTHCHECK needs the exec form: CMD [...]"
    probe = json.loads(probe_json.group(1))
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", probe[-1])
    assert url and int(url.group(1)) == args.http[1], probe
    # The probe itself, against the real HTTP server with API keys on: it sends no key.
    server = HttpServer("127.0.0.1", 0, [], api_keys=ApiKeys(["a-key"]))
    server.start()
    try:
        code = probe[-1].replace(url.group(0), f"http://127.0.0.1:{server.port}{url.group(2)}")
        assert probe[:-1] == ["python", "-c"], probe
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
    finally:
        server.stop()


def test_spicepod_loads_with_postgres_and_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = yaml.safe_load((DEPLOY / "spicepod.yaml").read_text())
    names = {name for text in _strings(raw) for name in POD_REFERENCE.findall(text)}
    for name in names:
        monkeypatch.setenv(name, f"test-{name.lower()}")
    config = load_config(DEPLOY / "spicepod.yaml")
    assert config.datasets
    services = _compose()["services"]
    postgres = _environment(services["postgres"])
    for dataset, spec in zip(config.datasets, raw["datasets"], strict=True):
        assert dataset.acceleration.engine == "postgres", dataset.name
        assert spec["acceleration"]["refresh_mode"] == "changes", dataset.name
        connection = dataset.acceleration.connection or {}
        # The database compose creates, on its postgres service.
        assert connection.get("host") == "postgres", connection.get("host")
        assert connection.get("dbname") == postgres["POSTGRES_DB"]
        assert connection.get("user") == postgres["POSTGRES_USER"]
    # Every secret the pod reads is in each runtime's environment (the env store also
    # tries the name upper-cased).
    for name in RUNTIMES:
        env = _environment(services[name])
        missing = sorted(n for n in names if n not in env and n.upper() not in env)
        assert missing == [], f"{name}: {missing}"
