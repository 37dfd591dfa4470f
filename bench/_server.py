"""Serve ``web.app.create_app(settings)`` with uvicorn on 127.0.0.1, for the benchmarks.

Started as a subprocess by :func:`start_server`, so the server has its own interpreter (and GIL)
and the client measuring it does not slow it down more than a real client would.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import _common as c


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_ready(
    base_url: str, proc: subprocess.Popen[bytes], *, timeout: float = 300.0
) -> float:
    """Poll ``/api/ask`` until it answers 200; seconds waited. Raises if the server died."""
    import httpx

    t0 = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=30) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with code {proc.returncode} before answering")
            try:
                if ask_http(client, "warm-up question", answer=False).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.TransportError:
                pass
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"server did not answer within {timeout}s")
            time.sleep(0.02)


def ask_http(client: object, question: str, *, answer: bool, k: int = 5) -> object:
    """One ``POST /api/ask`` (the JSON body the web layer takes)."""
    return client.post(  # type: ignore[attr-defined]
        "/api/ask", json={"question": question, "k": k, "answer": answer}
    )


@contextlib.contextmanager
def start_server(
    *,
    index_dir: Path,
    seeds_dir: Path,
    cache_size: int,
    embedder: str = "onnx",
    extra: list[str] | None = None,
    log: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A running server subprocess and its base URL; stopped (by its pid) on exit.

    Runs the real ``serve.py`` (settings, the backend included, through ``QA_*`` variables);
    with ``extra`` options (torch threads) it runs this module, which serves the same app with
    the same uvicorn options.
    """
    port = free_port()
    env = {
        **os.environ,
        "QA_SEEDS_DIR": str(seeds_dir),
        "QA_INDEX_DIR": str(index_dir),
        "QA_QUESTION_CACHE_SIZE": str(cache_size),
        "QA_RELOAD_INTERVAL": "0",
        "QA_BACKEND": embedder,
    }
    if not extra:
        cmd = [sys.executable, str(c.ROOT / "serve.py"), "--host", "127.0.0.1"]
    else:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--embedder",
            embedder,
            *(extra or []),
        ]
    cmd += ["--port", str(port)]
    with open(log or os.devnull, "ab") as err:
        proc = subprocess.Popen(cmd, cwd=c.ROOT, env=env, stdout=err, stderr=err)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, proc)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    """Entry point of the server subprocess: ``serve.py``'s app and options, set torch threads."""
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--embedder", choices=["torch", "onnx"], default="onnx")
    p.add_argument("--torch-threads", type=int)
    args = p.parse_args()
    logging.basicConfig(level="INFO", stream=sys.stderr)
    import uvicorn

    from qa.config import Settings
    from web.app import create_app

    settings = Settings.load(backend=args.embedder)  # QA_* variables, as serve.py reads them
    c.set_torch_threads(args.torch_threads)
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=args.port,
        log_level="info",
        server_header=False,
        proxy_headers=False,
    )
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
