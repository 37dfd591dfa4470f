"""Serve seedqa over HTTP: ``python serve.py [--host 127.0.0.1] [--port 8000] [--watch] ...``.

The index is brought up to date before the first request is accepted (in the app's lifespan).
SIGTERM or Ctrl-C stop accepting connections and let requests in flight finish.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

#: Seconds in-flight requests get to finish after SIGTERM before connections are closed.
GRACEFUL_SHUTDOWN_SECONDS = 30


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(prog="serve.py", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument("--seeds", type=Path, help="seeds folder (default: seeds/)")
    parser.add_argument("--index", type=Path, help="index folder (default: embeddings/)")
    parser.add_argument("--model", help="embedding model: 'bundled', a name, or a folder path")
    parser.add_argument("--config", type=Path, help="TOML file with settings")
    parser.add_argument(
        "--reader", type=Path, help="extractive QA model folder that picks the answer span"
    )
    parser.add_argument(
        "--reranker", type=Path, help="cross-encoder model folder that reorders the passages"
    )
    parser.add_argument(
        "--watch", action="store_true", help="reindex when files in the seeds folder change"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        help="serve N copies of the app through Ray Serve (needs the 'ray' extra); "
        "default: one process, no Ray",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, build the app and serve until stopped; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Imported after logging is set up: they are slow to import and may log.
    import uvicorn

    from qa.config import Settings
    from qa.errors import ConfigError
    from web.app import create_app

    try:
        settings = Settings.load(
            config_file=args.config,
            seeds_dir=args.seeds,
            index_dir=args.index,
            model=args.model,
            reader=args.reader,
            reranker=args.reranker,
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.replicas is not None:
        from web.replicas import serve_forever

        try:
            return serve_forever(
                settings, replicas=args.replicas, host=args.host, port=args.port, watch=args.watch
            )
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    app = create_app(settings, watch=args.watch)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        server_header=False,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
