"""serve.py as a process: SIGTERM lets in-flight requests finish, loopback by default, and
the quick load test runs without errors."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ._reliability import (
    QUESTIONS,
    child_env,
    wait_for,
)
from .conftest import ROOT


# -- serve.py: shutdown and defaults ---------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses (hex, as in /proc/net/tcp) listening on ``port``."""
    out = set()
    for line in Path("/proc/net/tcp").read_text(encoding="ascii").splitlines()[1:]:
        fields = line.split()
        address, port_hex = fields[1].split(":")
        if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
            out.add(address)
    return out


@contextmanager
def serve_py(seeds: Path, index: Path, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``serve.py`` with the fake model on a free port, default host, logging to ``log`` (a
    file: a pipe nobody reads would fill up and stall the server); killed if still alive."""
    import httpx

    port = _free_port()
    cmd = [sys.executable, str(ROOT / "serve.py"), "--port", str(port)]
    cmd += ["--seeds", str(seeds), "--index", str(index)]
    env = child_env(QA_MODEL="fake", QA_ANSWER_THRESHOLD="0")
    with open(log, "wb") as err, subprocess.Popen(cmd, env=env, cwd=log.parent, stderr=err) as proc:
        try:

            def up() -> bool:
                assert proc.poll() is None, log.read_text(encoding="utf-8")[-3000:]
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).is_success
                except httpx.TransportError:
                    return False

            assert wait_for(up), "serve.py did not come up"
            yield proc, port
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def _hold_request(port: int, body: bytes) -> socket.socket:
    """Start a POST /api/ask and stop before its body, once the app is reading it: the server
    answers ``Expect: 100-continue`` only when the app first asks for the body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        b"POST /api/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    head = b""
    for _ in range(100):  # a few bytes expected; bounded in reads and by the socket timeout
        chunk = sock.recv(64)
        head += chunk
        if not chunk or b"\r\n\r\n" in head:
            break
    assert head.startswith(b"HTTP/1.1 100 Continue"), head
    return sock


@pytest.mark.slow
def test_sigterm_lets_in_flight_requests_finish(seeds_dir: Path, tmp_path: Path) -> None:
    """SIGTERM while requests are in flight: new connections are refused at once, every
    request already in the app completes with 200, and the process exits by itself."""
    import httpx

    from serve import GRACEFUL_SHUTDOWN_SECONDS

    log_path = tmp_path / "serve.log"
    with serve_py(seeds_dir, tmp_path / "emb", log_path) as (proc, port):
        # Bound to loopback by default (no --host given), never to every interface.
        assert _listening_addresses(port) == {"0100007F"}
        body = json.dumps({"question": QUESTIONS[0], "k": 5}).encode()
        held = [_hold_request(port, body) for _ in range(4)]
        statuses: list[int] = []
        failures: list[str] = []
        stop = threading.Event()

        def hammer() -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                for i in range(10_000):
                    if stop.is_set():
                        return
                    try:
                        r = client.post(
                            "/api/ask", json={"question": QUESTIONS[i % len(QUESTIONS)]}
                        )
                        statuses.append(r.status_code)
                    except httpx.TransportError as exc:  # refused or closed: never half an answer
                        failures.append(type(exc).__name__)
                        return

        threads = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        assert wait_for(lambda: len(statuses) >= 20)
        proc.send_signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return True
            return False

        assert wait_for(refused, timeout=30), "still accepting connections after SIGTERM"
        assert proc.poll() is None  # waiting for the requests in flight
        answers = []
        for sock in held:
            with sock:
                sock.sendall(body)
                response = http.client.HTTPResponse(sock)
                response.begin()
                answers.append((response.status, json.loads(response.read())))
        stop.set()
        for t in threads:
            t.join(timeout=30)
        code = proc.wait(timeout=GRACEFUL_SHUTDOWN_SECONDS + 15)
    log = log_path.read_text(encoding="utf-8")
    assert [status for status, _ in answers] == [200] * 4
    for _, answer in answers:
        assert answer["passages"]
        for p in answer["passages"]:
            text = (seeds_dir / p["source"]).read_bytes().decode("utf-8")
            assert text[p["start"] : p["end"]] == p["text"]
    assert statuses
    assert set(statuses) == {200}, statuses
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in log
    assert "Traceback" not in log


def test_serve_py_binds_loopback_by_default() -> None:
    import serve

    assert serve.build_parser().parse_args([]).host == "127.0.0.1"
    assert "loopback" in serve.build_parser().format_help()


# -- the load test ---------------------------------------------------------------------------
@pytest.mark.slow
def test_load_test_quick(tmp_path: Path) -> None:
    """``bench/load_test.py --quick`` runs, stops by itself and reports no error."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load_test.py"), "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "load_test.json").read_text(encoding="utf-8"))
    assert result["benchmark"] == "load_test"
    assert result["quick"] is True
    assert {"machine", "loadavg_start", "loadavg_end", "command", "latency_ms", "rss_kb"} <= (
        result.keys()
    )
    assert {"p50", "p99"} <= result["latency_ms"].keys()
    assert {"start", "end", "max", "slope_kb_per_min", "growth_pct"} <= result["rss_kb"].keys()
    assert result["rss_kb"]["samples"]
    assert result["requests"] > 0
    mix = result["mix"]
    assert mix["answer_true"] + mix["answer_false"] == result["requests"]
    assert mix["answer_true"] > 0
    assert mix["answer_false"] > 0
    assert result["errors"] == 0, result["error_samples"]
    assert result["server_exit"]["clean"] is True
