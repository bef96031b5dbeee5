"""API keys and TLS: Flight SQL through the real ADBC client, HTTP, the spicepod and the CLI."""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow.flight as flight
import pytest
from adbc_driver_manager import AdbcStatusCode

from flightsrv.auth import ApiKeyMiddlewareFactory, ApiKeys, HandshakeHandler, basic_password
from flightsrv.config import ConfigError, parse_config
from flightsrv.flightsql import FlightSqlServer
from flightsrv.http import HttpServer
from sync.accelerators.duckdb import DuckDBAccelerator
from sync.settings import AccelerationSettings
from tests.certs import Certificate, self_signed
from tests.flightsrv.flightsql.engines import EngineCatalog, RecordingHandle
from tests.flightsrv.flightsql.test_errors import assert_one_clean_line
from tests.runtime_process import RuntimeProcess

KEY = "s3cret-key"
TLS_ROOTS = "adbc.flight.sql.client_option.tls_root_certs"
AUTHORIZATION = "adbc.flight.sql.authorization_header"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed(tmp_path_factory.mktemp("tls"))


class Secured:
    def __init__(self, server: FlightSqlServer, handle: RecordingHandle, cert: Certificate):
        self.server = server
        self.handle = handle
        self.cert = cert
        self.uri = f"grpc+tls://127.0.0.1:{server.port}"

    def connect(self, **db_kwargs: str) -> flightsql.Connection:
        # autocommit: without a key the driver's transaction probe fails, and it would warn.
        return flightsql.connect(
            self.uri,
            db_kwargs={TLS_ROOTS: self.cert.cert_pem.decode(), **db_kwargs},
            autocommit=True,
        )


@pytest.fixture(scope="module")
def secured(cert: Certificate) -> Iterator[Secured]:
    """A Flight SQL server over TLS that needs the key; its engine notes what it runs."""
    scratch = DuckDBAccelerator(AccelerationSettings("duckdb", "memory"))
    handle = RecordingHandle(scratch.query_handle())
    server = FlightSqlServer(
        "grpc+tls://127.0.0.1:0",
        EngineCatalog(scratch=handle),
        tls_certificates=[(cert.cert_pem, cert.key_pem)],
        auth_handler=HandshakeHandler(),
        middleware={"auth": ApiKeyMiddlewareFactory(ApiKeys([KEY, "other-key"]))},
    )
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    yield Secured(server, handle, cert)
    server.shutdown()
    thread.join(timeout=10)
    scratch.close()


def _one(conn: flightsql.Connection, sql: str = "SELECT 42 AS answer") -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def test_bearer_key_over_tls(secured: Secured) -> None:
    with secured.connect(**{AUTHORIZATION: f"Bearer {KEY}"}) as conn:
        assert _one(conn) == [(42,)]
        assert conn.adbc_get_table_types() == ["TABLE", "VIEW"]


def test_basic_credentials_get_a_bearer_token(secured: Secured) -> None:
    # ADBC sends username:password through the Handshake (base64 without padding) and uses
    # the token it gets back; any username, the key as the password.
    with secured.connect(username="anyone", password="other-key") as conn:
        assert _one(conn) == [(42,)]
    client = flight.connect(secured.uri, tls_root_certs=secured.cert.cert_pem)
    assert client.authenticate_basic_token(b"me", KEY.encode()) == (
        b"authorization",
        f"Bearer {KEY}".encode(),
    )


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {AUTHORIZATION: "Bearer wrong"},
        {AUTHORIZATION: f"Basic {KEY}"},
        {AUTHORIZATION: "Basic w6k6w6k="},  # é:é
    ],
    ids=["none", "wrong-bearer", "not-base64", "non-ascii-basic"],
)
def test_missing_or_wrong_key_is_unauthenticated_and_nothing_runs(
    secured: Secured, credentials: dict[str, str]
) -> None:
    ran = len(secured.handle.executed)
    with secured.connect(**credentials) as conn, pytest.raises(adbc_driver_manager.Error) as e:
        _one(conn)
    assert e.value.status_code == AdbcStatusCode.UNAUTHENTICATED
    assert "API key" in str(e.value)
    assert_one_clean_line(str(e.value))
    assert len(secured.handle.executed) == ran


def test_wrong_password_fails_at_connect(secured: Secured) -> None:
    with pytest.raises(adbc_driver_manager.Error) as e:
        secured.connect(username="anyone", password="wrong").close()
    assert e.value.status_code == AdbcStatusCode.UNAUTHENTICATED


def test_every_flight_call_needs_the_key(secured: Secured) -> None:
    client = flight.connect(secured.uri, tls_root_certs=secured.cert.cert_pem)
    for call in (
        lambda: list(client.list_actions()),
        lambda: list(client.list_flights()),
        lambda: client.do_get(flight.Ticket(b"anything")).read_all(),
        lambda: list(client.do_action(flight.Action("GetSessionOptions", b""))),
    ):
        with pytest.raises(flight.FlightUnauthenticatedError):
            call()


def test_plain_text_client_cannot_reach_a_tls_server(secured: Secured) -> None:
    plain = f"grpc://127.0.0.1:{secured.server.port}"
    with pytest.raises(flight.FlightUnavailableError):
        flight.connect(plain).list_actions(
            options=flight.FlightCallOptions(
                timeout=5, headers=[(b"authorization", f"Bearer {KEY}".encode())]
            )
        )


def test_basic_credentials_decode_with_or_without_padding() -> None:
    for user in ("a", "ab", "abc"):
        encoded = base64.b64encode(f"{user}:{KEY}".encode()).decode()
        assert basic_password(encoded) == KEY
        assert basic_password(encoded.rstrip("=")) == KEY
    assert basic_password("%%%") is None
    assert basic_password(base64.b64encode(b"no-colon").decode()) is None


# --- HTTP -------------------------------------------------------------------------------------


def _get(url: str, **headers: str) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_http_endpoints_need_the_key_except_probes() -> None:
    server = HttpServer("127.0.0.1", 0, [], api_keys=ApiKeys([KEY]))
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert _get(f"{base}/health") == 200
        assert _get(f"{base}/v1/ready") == 200
        for path in ("/v1/datasets", "/v1/status", "/nowhere"):
            assert _get(f"{base}{path}") == 401
            assert _get(f"{base}{path}", **{"X-API-Key": "wrong"}) == 401
        assert _get(f"{base}/v1/datasets", **{"X-API-Key": KEY}) == 200
        assert _get(f"{base}/v1/status", Authorization=f"Bearer {KEY}") == 200
        assert _get(f"{base}/nowhere", **{"X-API-Key": KEY}) == 404
    finally:
        server.stop()


# --- spicepod -------------------------------------------------------------------------------


def _pod(runtime: dict[str, Any]) -> dict[str, Any]:
    return {"version": "v1", "kind": "Spicepod", "name": "t", "datasets": [], "runtime": runtime}


def test_spicepod_auth_and_tls_parse(
    tmp_path: Path, cert: Certificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THE_KEY", KEY)
    config = parse_config(
        _pod(
            {
                "auth": {"api-key": {"enabled": True, "keys": ["${env:THE_KEY}", "k2:rw", 123]}},
                "tls": {
                    "enabled": True,
                    "certificate_file": str(cert.cert_file),
                    "key_file": str(cert.key_file),
                },
            }
        ),
        tmp_path / "spicepod.yaml",
    )
    assert config.api_keys == (KEY, "k2", "123")
    assert config.tls is not None and config.tls.load() == (cert.cert_pem, cert.key_pem)
    spice_spelling = _pod({"auth": {"api_key": {"keys": ["k"]}}, "tls": {"enabled": False}})
    config = parse_config(spice_spelling, tmp_path / "spicepod.yaml")
    assert config.api_keys == ("k",) and config.tls is None
    disabled = _pod({"auth": {"api-key": {"enabled": False, "keys": ["k"]}}})
    assert parse_config(disabled, tmp_path / "spicepod.yaml").api_keys == ()


@pytest.mark.parametrize(
    ("runtime", "message"),
    [
        ({"auth": {"basic": {}}}, "runtime.auth: basic: unknown key"),
        ({"auth": {"api-key": {"enabled": True}}}, "runtime.auth.api-key.keys: expected a non"),
        ({"auth": {"api-key": {"keys": []}}}, "runtime.auth.api-key.keys: expected a non-empty"),
        ({"auth": {"api-key": {"keys": [":rw"]}}}, "runtime.auth.api-key.keys[0]: empty API key"),
        ({"auth": {"api-key": {"keys": ["a b"]}}}, "keys[0]: an API key cannot contain spaces"),
        ({"auth": {"api-key": {"keys": ["${env:NOPE_NOT_SET}"]}}}, "keys[0]: environment var"),
        ({"auth": {"api-key": {"keys": ["k"], "ttl": 1}}}, "runtime.auth.api-key.ttl: unknown"),
        ({"auth": {"api-key": {}, "api_key": {}}}, "api-key or api_key, not both"),
        ({"tls": {"enabled": True}}, "runtime.tls.certificate_file: required"),
        ({"tls": {"certificate": "PEM"}}, "runtime.tls: certificate: unknown key"),
        (
            {"tls": {"certificate_file": "missing.crt", "key_file": "missing.key"}},
            "runtime.tls.certificate_file: cannot read",
        ),
    ],
)
def test_spicepod_auth_and_tls_errors_are_one_line(
    tmp_path: Path, runtime: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_pod(runtime), tmp_path / "spicepod.yaml")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_tls_files_must_be_pem(tmp_path: Path, cert: Certificate) -> None:
    (tmp_path / "key.txt").write_text("not a key")
    runtime = {"tls": {"certificate_file": str(cert.cert_file), "key_file": "key.txt"}}
    with pytest.raises(ConfigError, match=r"runtime.tls.key_file: .*key.txt is not a PEM key"):
        parse_config(_pod(runtime), tmp_path / "spicepod.yaml")


# --- the runtime, as a user runs it -----------------------------------------------------------


@pytest.mark.slow  # a runtime process with TLS
def test_runtime_serves_tls_and_api_keys_from_the_spicepod(
    tmp_path: Path, cert: Certificate, runtimes: list[RuntimeProcess]
) -> None:
    runtime = RuntimeProcess(
        tmp_path,
        [],
        runtime={
            "auth": {"api-key": {"enabled": True, "keys": ["${env:DYNAMIRROR_TEST_KEY}"]}},
            "tls": {
                "enabled": True,
                "certificate_file": str(cert.cert_file),
                "key_file": str(cert.key_file),
            },
        },
        env={"DYNAMIRROR_TEST_KEY": KEY},
        api_key=KEY,
    )
    runtimes.append(runtime.start())
    uri = f"grpc+tls://127.0.0.1:{runtime.flight_port}"
    roots = cert.cert_pem.decode()
    with flightsql.connect(uri, db_kwargs={TLS_ROOTS: roots, AUTHORIZATION: f"Bearer {KEY}"}) as c:
        assert _one(c, "SELECT 40 + 2 AS n") == [(42,)]
    with flightsql.connect(uri, db_kwargs={TLS_ROOTS: roots}, autocommit=True) as conn:
        with pytest.raises(adbc_driver_manager.Error) as e:
            _one(conn)
    assert e.value.status_code == AdbcStatusCode.UNAUTHENTICATED
    base = f"http://127.0.0.1:{runtime.http_port}"
    assert _get(f"{base}/health") == 200 and _get(f"{base}/v1/datasets") == 401
    assert _get(f"{base}/v1/datasets", **{"X-API-Key": KEY}) == 200
    metrics = f"http://127.0.0.1:{runtime.metrics_port}/metrics"
    assert _get(metrics) == 401 and _get(metrics, Authorization=f"Bearer {KEY}") == 200

    # The command-line client, with statements piped in.
    command = [sys.executable, "-m", "flightsrv", "sql", "--uri", uri]
    command += ["--tls-root-certs", str(cert.cert_file)]
    done = subprocess.run(
        [*command, "--api-key", KEY],
        input="SELECT 1 AS a;\nSELECT range AS i\nFROM range(3);\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "| a |" in done.stdout and "Time: " in done.stdout and "3 rows." in done.stdout
    refused = subprocess.run([*command, "SELECT 1"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: missing or invalid API key")


def test_cli_tls_flags_and_compression(
    tmp_path: Path, cert: Certificate, runtimes: list[RuntimeProcess]
) -> None:
    runtime = RuntimeProcess(
        tmp_path,
        [],
        args=[
            "--tls-certificate-file",
            str(cert.cert_file),
            "--tls-key-file",
            str(cert.key_file),
            "--flight-compression",
            "zstd",
        ],
    )
    runtimes.append(runtime.start())
    uri = f"grpc+tls://127.0.0.1:{runtime.flight_port}"
    with flightsql.connect(uri, db_kwargs={TLS_ROOTS: cert.cert_pem.decode()}) as conn:
        rows = _one(
            conn,
            "SELECT count(*) AS n, min(length(s)) AS l FROM "
            "(SELECT repeat('x', 100) AS s FROM range(100000))",
        )
    assert rows == [(100000, 100)]
    assert "grpc+tls://" in runtime.log.read_text()


@pytest.mark.slow  # runtime processes
def test_cli_tls_flags_must_come_in_pairs(tmp_path: Path, cert: Certificate) -> None:
    (tmp_path / "spicepod.yaml").write_text("version: v1\nkind: Spicepod\ndatasets: []\n")
    base = [sys.executable, "-m", "flightsrv", "run", "--config", str(tmp_path / "spicepod.yaml")]
    done = subprocess.run(
        [*base, "--tls-certificate-file", str(cert.cert_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--tls-key-file" in done.stderr
    done = subprocess.run(
        [*base, "--tls-certificate-file", str(cert.cert_file), "--tls-key-file", "nope.pem"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --tls-certificate-file/--tls-key-file.key_file: cannot read nope.pem: "
        "No such file or directory"
    ]
