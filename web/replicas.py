"""Serving from N replicas of the app through Ray Serve (``serve.py --replicas N``).

Each replica is a whole seedqa app in its own process: it builds its own service in the app's
lifespan, reads the published generation from the index folder every replica shares, and follows
``CURRENT`` with the service's reload poll, so a new generation reaches every replica within
``reload_interval`` and each swaps between two queries. Reindex requests may land on any
replica; the build's file lock serialises them across processes. Ray Serve's proxy spreads the
requests over the replicas.

The plain alternative needs no Ray: start N ``serve.py`` processes on N ports over the same
``--index`` folder behind any load balancer (docs/scale-out.md).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from fastapi import FastAPI

from qa.config import Settings
from qa.errors import ConfigError
from qa.index.ray_executor import cluster_address

log = logging.getLogger(__name__)

#: Requests one replica takes at once (its thread pool and question batcher queue the rest).
MAX_ONGOING_REQUESTS = 64
MISSING_RAY = "--replicas needs the optional 'ray' extra: pip install 'seedqa[ray]'"
#: Ray Serve gives its HTTP proxy 5 s to report ready and marks it unhealthy after three misses;
#: on a busy 2-core machine starting the proxy takes longer than that, so the start failed.
#: Read by Ray's processes from the environment they inherit when Ray starts.
PROXY_READY_TIMEOUT = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60"}


def prepare_ray_environment() -> None:
    """Set Ray Serve's start-up timeouts (unless the user set them); call before ``ray.init``."""
    for name, value in PROXY_READY_TIMEOUT.items():
        os.environ.setdefault(name, value)


def build_app(settings: Settings, watch: bool) -> FastAPI:
    """The app one replica runs (evaluated on the replica, so nothing big is pickled)."""
    from web.app import create_app

    return create_app(settings, watch=watch)


def deploy(
    settings: Settings,
    *,
    replicas: int,
    host: str,
    port: int,
    watch: bool = False,
    replica_cpus: float = 1.0,
) -> Any:
    """Start Ray Serve on ``host:port`` with ``replicas`` copies of the app; returns its handle.

    Joins the cluster at ``settings.ray_address`` when Ray is not initialised yet (unset: a
    private local one, see :func:`qa.index.ray_executor.cluster_address`). Blocks until every
    replica has finished its start-up (index loaded).
    """
    if replicas < 1:
        raise ConfigError(f"replicas must be at least 1, got {replicas}")
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise ConfigError(MISSING_RAY) from exc
    if not ray.is_initialized():
        prepare_ray_environment()
        ray.init(
            address=cluster_address(settings.ray_address),
            include_dashboard=False,
            configure_logging=False,
        )
    serve.start(http_options={"host": host, "port": port})

    def builder() -> FastAPI:
        # Ray Serve calls a builder with no arguments on each replica; a partial would be
        # taken for the ASGI app itself.
        return build_app(settings, watch)

    ingress = serve.ingress(builder)
    deployment = serve.deployment(
        name="seedqa",
        num_replicas=replicas,
        ray_actor_options={"num_cpus": replica_cpus},
        # A replica's first start builds or loads the index and warms the model.
        health_check_timeout_s=600,
        # Ray Serve's default (5) queues requests at the proxy that the app's own thread pool
        # and question batching would take at once.
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
    )(ingress())
    log.info("serving %d replicas on http://%s:%s", replicas, host, port)
    return serve.run(deployment.bind(), name="seedqa", route_prefix="/")


def shutdown() -> None:
    """Stop Ray Serve and leave the cluster."""
    import ray
    from ray import serve

    serve_: Any = serve  # parts of Ray Serve's API are untyped
    serve_.shutdown()
    ray.shutdown()


def serve_forever(settings: Settings, *, replicas: int, host: str, port: int, watch: bool) -> int:
    """``serve.py --replicas N``: deploy, then wait for SIGTERM or Ctrl-C; returns the exit code."""
    import signal

    stop = threading.Event()
    deploy(settings, replicas=replicas, host=host, port=port, watch=watch)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        shutdown()
    return 0
