"""The `http` output: body formats and content types, gzip, Basic auth, headers, TLS, and what
the agent does for each kind of answer (docs/delivery.md; issue 4 "Must show" 2, 4 and 6)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
import ssl
import time
from pathlib import Path

import pytest
import trustme

from shipper.outputs.httpclient import retry_after
from tests.agent import Agent
from tests.outputs.conftest import append_lines, tail_input, write_config
from tests.outputs.receivers import (
    RESET,
    JsonReceiver,
    Receiver,
    Slow,
    Status,
    basic_auth,
    wait_until,
)


def _http(rx: Receiver, **keys: str | list[str]) -> dict[str, object]:
    out: dict[str, object] = {
        "Name": "http",
        "Match": "*",
        "Host": "127.0.0.1",
        "Port": str(rx.port),
        "Format": "json_lines",
    }
    out.update(keys)
    return out


def _lines(n: int, tag: str = "line") -> list[str]:
    return [f"{tag} {i:06d}" for i in range(n)]


def test_formats_content_types_and_date_keys(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    append_lines(log, _lines(50))
    rx_json, rx_lines, rx_stream = (
        JsonReceiver("json"),
        JsonReceiver("json_lines"),
        JsonReceiver("json_stream"),
    )
    try:
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[tail_input(log)],
            outputs=[
                _http(
                    rx_json,
                    Format="json",
                    json_date_key="ts",
                    json_date_format="iso8601",
                    http_method="PUT",
                ),
                _http(rx_lines, URI="/ingest?x=1%202"),
                _http(rx_stream, Format="json_stream", json_date_key="false"),
            ],
        )
        with Agent(["-c", str(cfg)]) as agent:
            for rx in (rx_json, rx_lines, rx_stream):
                wait_until(lambda rx=rx: len(rx.logs()) >= 50, 15, "50 records")
            agent.stop()
        for rx in (rx_json, rx_lines, rx_stream):
            assert rx.errors == []
            assert rx.logs() == _lines(50)
        first = rx_json.snapshot()[0]
        assert first.method == "PUT"
        assert first.headers["Content-Type"] == "application/json"
        rec = rx_json.accepted[0][0]
        assert list(rec) == ["ts", "log"]
        when = dt.datetime.strptime(rec["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
        assert abs(when.timestamp() - time.time()) < 60
        seen = rx_lines.snapshot()[0]
        assert (seen.method, seen.path, seen.query) == ("POST", "/ingest", "x=1%202")
        assert seen.headers["Content-Type"] == "application/x-ndjson"
        assert isinstance(rx_lines.accepted[0][0]["date"], float)
        assert rx_stream.snapshot()[0].headers["Content-Type"] == "application/json"
        assert "date" not in rx_stream.accepted[0][0]
    finally:
        for rx in (rx_json, rx_lines, rx_stream):
            rx.close()


def test_gzip_basic_auth_and_headers(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    append_lines(log, _lines(2000))
    with JsonReceiver() as rx:
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[tail_input(log)],
            outputs=[
                _http(
                    rx,
                    compress="gzip",
                    HTTP_User="ray",
                    HTTP_Passwd="p@ss word",
                    Header=["X-Team observability", "X-Note two words here"],
                )
            ],
        )
        with Agent(["-c", str(cfg)]) as agent:
            wait_until(lambda: len(rx.logs()) >= 2000, 15, "2000 records")
            agent.stop()
        assert rx.errors == []
        assert rx.logs() == _lines(2000)
        for seen in rx.snapshot():
            assert seen.headers["Content-Encoding"] == "gzip"
            assert seen.raw[:2] == b"\x1f\x8b" and len(seen.raw) < len(seen.body)
            assert basic_auth(seen) == ("ray", "p@ss word")
            assert seen.headers["X-Team"] == "observability"
            assert seen.headers["X-Note"] == "two words here"
            assert seen.headers["User-Agent"].startswith("shipper/")


def test_tls_ca_vhost_mutual_and_verify(tmp_path: Path) -> None:
    ca, other_ca = trustme.CA(), trustme.CA()
    ca_pem, other_pem = tmp_path / "ca.pem", tmp_path / "other.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    other_ca.cert_pem.write_to_path(str(other_pem))

    def server_ctx(*names: str, client_ca: trustme.CA | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(ctx)
        if client_ca is not None:
            client_ca.configure_trust(ctx)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    client = ca.issue_cert("shipper-client")
    crt, key = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(crt))
    client.private_key_pem.write_to_path(str(key))

    good = JsonReceiver(ssl_context=server_ctx("127.0.0.1"))
    wrong = JsonReceiver(ssl_context=server_ctx("127.0.0.1"))
    unverified = JsonReceiver(ssl_context=server_ctx("127.0.0.1"))
    vhost_mtls = JsonReceiver(ssl_context=server_ctx("logs.example.test", client_ca=ca))
    log = tmp_path / "a.log"
    append_lines(log, _lines(20))
    try:
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[tail_input(log)],
            outputs=[
                _http(good, tls="on", **{"tls.ca_file": str(ca_pem)}),
                _http(wrong, tls="on", **{"tls.verify": "on", "tls.ca_file": str(other_pem)}),
                _http(unverified, tls="on", **{"tls.verify": "off"}),
                _http(
                    vhost_mtls,
                    tls="on",
                    **{
                        "tls.ca_file": str(ca_pem),
                        "tls.vhost": "logs.example.test",
                        "tls.crt_file": str(crt),
                        "tls.key_file": str(key),
                    },
                ),
            ],
        )
        with Agent(["-c", str(cfg)]) as agent:
            for rx in (good, unverified, vhost_mtls):
                wait_until(lambda rx=rx: len(rx.logs()) >= 20, 15, "20 records over TLS")
            agent.wait_stderr(f"certificate verify failed for 127.0.0.1:{wrong.port}", 10)
            err = agent.err_text()
            agent.kill()
        for rx in (good, unverified, vhost_mtls):
            assert rx.errors == [] and rx.logs() == _lines(20)
        assert wrong.snapshot() == [], "a request got through an unverified TLS connection"
        assert "check tls.ca_file" in err
    finally:
        for rx in (good, wrong, unverified, vhost_mtls):
            rx.close()


def test_bad_tls_file_is_a_config_error(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    cfg = write_config(
        tmp_path / "c.conf",
        inputs=[tail_input(log)],
        outputs=[
            {
                "Name": "http",
                "Match": "*",
                "Format": "json",
                "tls": "on",
                "tls.ca_file": str(tmp_path / "missing.pem"),
            }
        ],
    )
    agent = Agent(["-c", str(cfg), "--dry-run"])
    assert agent.proc.wait(20) == 1
    agent.kill()
    assert "tls.ca_file" in agent.err_text() and "c.conf:" in agent.err_text()


@pytest.mark.timeout(90)
def test_answers_decide_retry_or_drop(tmp_path: Path) -> None:
    """One agent, one output per scenario, all fed the same records."""
    log = tmp_path / "a.log"
    db = tmp_path / "offsets.db"
    rx = {
        name: JsonReceiver()
        for name in (
            "five",
            "throttled",
            "reset",
            "slow",
            "timeout",
            "final",
            "limited",
            "no_retries",
        )
    }
    rx["five"].script(Status(500, "boom"), Status(503))
    rx["throttled"].script(Status(429, retry_after="2"))
    rx["reset"].script(RESET)
    rx["slow"].script(Slow(3.0))
    rx["timeout"].script(Slow(3.0))
    rx["final"].script(Status(400, "Cannot parse input"))
    rx["limited"].script(*[Status(500)] * 3)
    rx["no_retries"].script(Status(502))
    outputs = [_http(r, Alias=name) for name, r in rx.items()]
    for out in outputs:
        if out["Alias"] == "timeout":
            out["net.io_timeout"] = "1"
        if out["Alias"] == "limited":
            out["Retry_Limit"] = "2"
        if out["Alias"] == "no_retries":
            out["Retry_Limit"] = "no_retries"
    cfg = write_config(
        tmp_path / "c.conf",
        inputs=[tail_input(log, DB=str(db))],
        outputs=outputs,
        service={"scheduler.cap": "3"},
    )
    first, second = _lines(300, "first"), _lines(300, "second")
    try:
        with Agent(["-c", str(cfg)]) as agent:
            append_lines(log, first)
            for name in ("five", "throttled", "reset", "slow", "timeout"):
                wait_until(lambda name=name: len(rx[name].logs()) >= 300, 20, f"{name}: batch 1")
            agent.wait_stderr("[final] dropped 300 records", 10)
            agent.wait_stderr("[limited] dropped 300 records: retry limit reached", 15)
            agent.wait_stderr("[no_retries] dropped 300 records: retry limit reached", 10)
            append_lines(log, second)  # everyone moves on
            for r in rx.values():
                wait_until(lambda r=r: second[-1] in r.logs(), 20, "the second batch")
            assert agent.stop() == 0
            err = agent.err_text()
        for name, r in rx.items():
            assert r.errors == [], name
        seen = {name: r.snapshot() for name, r in rx.items()}

        # 5xx: retried until accepted, each record delivered once
        assert [s.answered for s in seen["five"][:3]] == [500, 503, 200]
        assert rx["five"].logs() == first + second
        assert "[five] delivery failed (127.0.0.1:" in err and "HTTP status=500: boom" in err
        # 429 + Retry-After: 2 -> the retry waits at least 2 s
        a, b = seen["throttled"][:2]
        assert a.answered == 429 and b.at - a.at >= 1.9
        assert rx["throttled"].logs() == first + second
        # a reset connection is retried
        assert "[reset] delivery failed" in err and rx["reset"].logs() == first + second
        # a slow answer within net.io_timeout is waited for: one request, no retry
        assert len(seen["slow"]) == 2 and rx["slow"].logs() == first + second
        assert "[slow] delivery failed" not in err
        # ... beyond it the batch is sent again (at least once: the slow one also landed)
        assert "did not answer in time" in err and len(seen["timeout"]) >= 3
        assert set(rx["timeout"].logs()) == set(first + second)
        # other 4xx: final, logged once, never sent again, the next batch flows
        assert [s.answered for s in seen["final"]] == [400, 200]
        assert err.count("[final] dropped 300 records") == 1
        assert "HTTP status=400: Cannot parse input" in err
        assert rx["final"].logs() == second
        # Retry_Limit 2: three attempts, then dropped; no_retries: one attempt
        assert [s.answered for s in seen["limited"][:3]] == [500, 500, 500]
        assert rx["limited"].logs() == second and len(seen["limited"]) == 4
        assert [s.answered for s in seen["no_retries"]] == [502, 200]
        # dropped batches are released: the offset of the whole file is stored
        with sqlite3.connect(db) as conn:
            (offset,) = conn.execute("SELECT offset FROM files").fetchone()
        assert offset == log.stat().st_size
    finally:
        for r in rx.values():
            r.close()


def test_retry_after_forms() -> None:
    assert retry_after("3") == 3.0
    assert retry_after(" 1.5 ") == 1.5
    assert retry_after(None) is None and retry_after("soon") is None
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    value = retry_after(later.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert value is not None and 27 <= value <= 31
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_no_secret_in_stderr_at_any_level(tmp_path: Path) -> None:
    """Secrets from the config and ${ENV} never reach the agent's log, even when the server
    echoes them back in its error answers and the log level is debug (-vv)."""
    secrets = {
        "passwd": "Hunter2-pass-word",
        "token": "tok-4f9c2e7d1b",
        "apikey": "key-77aa31bb",
        "bearer": "loki-bearer-93jd",
        "es": "es-pw-55k1",
    }
    basic = base64.b64encode(f"admin:{secrets['passwd']}".encode()).decode()
    log = tmp_path / "a.log"
    append_lines(log, _lines(10))
    echo = "echo: " + " ".join(secrets.values()) + " " + basic + " Bearer " + secrets["token"]
    http_rx, loki_rx, es_rx = JsonReceiver(), Receiver(), Receiver()
    for r in (http_rx, loki_rx, es_rx):
        r.script(Status(500, echo), Status(401, echo), Status(500, echo))
    try:
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[tail_input(log)],
            outputs=[
                _http(
                    http_rx,
                    HTTP_User="admin",
                    HTTP_Passwd=secrets["passwd"],
                    Header=[
                        "Authorization Bearer ${SHIPPER_TEST_TOKEN}",
                        f"X-Api-Key {secrets['apikey']}",
                    ],
                ),
                {
                    "Name": "loki",
                    "Match": "*",
                    "Port": str(loki_rx.port),
                    "Bearer_Token": secrets["bearer"],
                    "Tenant_ID": "t1",
                },
                {
                    "Name": "es",
                    "Match": "*",
                    "Port": str(es_rx.port),
                    "HTTP_User": "elastic",
                    "HTTP_Passwd": secrets["es"],
                    "Suppress_Type_Name": "on",
                },
            ],
            service={"Log_Level": "debug"},
        )
        with Agent(["-c", str(cfg), "-vv"], env={"SHIPPER_TEST_TOKEN": secrets["token"]}) as agent:
            agent.wait_stderr("[http.0] dropped 10 records", 15)
            agent.wait_stderr("[loki.0] dropped 10 records", 15)
            agent.wait_stderr("[es.0] dropped 10 records", 15)
            agent.stop()
            err = agent.err_text()
        assert "HTTP status=401" in err and "*****" in err  # the echo was logged, scrubbed
        for name, value in [*secrets.items(), ("basic", basic)]:
            assert value not in err, f"{name} leaked into stderr"
        seen = http_rx.snapshot()[0]
        assert seen.headers["Authorization"] == f"Bearer {secrets['token']}"
        assert basic_auth(seen) is None  # the explicit header wins over HTTP_User
        assert json.loads(seen.body.decode().splitlines()[0])["log"] == "line 000000"
    finally:
        for r in (http_rx, loki_rx, es_rx):
            r.close()
