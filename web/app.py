"""The FastAPI application: :func:`create_app` wires settings, service, routes and middleware.

Nothing is loaded at import time or in :func:`create_app`; the lifespan starts the service
(bringing the index up to date) and closes it at shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.concurrency import run_in_threadpool

from qa.ask.service import QAService
from qa.config import Settings
from qa.errors import QAError
from qa.index.watch import SeedWatcher
from web import api, documents, pages
from web.deps import AppContext
from web.docs import install_docs
from web.errors import UnexpectedErrorMiddleware, install_error_handlers
from web.metrics import Metrics, MetricsMiddleware
from web.render import document_url, highlight, search_url
from web.security import BodyGuardMiddleware, SecurityHeadersMiddleware

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"


def make_templates() -> Jinja2Templates:
    """The page templates, autoescaped, with the helpers they use as filters and globals."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # every page is HTML; nothing from a user or a seed is trusted
        undefined=StrictUndefined,  # a typo in a template fails the tests instead of vanishing
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["highlight"] = highlight
    env.globals.update(document_url=document_url, search_url=search_url)
    return Jinja2Templates(env=env)


def _start_service(ctx: AppContext) -> None:
    """Start the service; on a domain error keep serving, degraded, and say why."""
    service = QAService(ctx.settings)
    ctx.service = service
    try:
        service.start(update=True)
        return
    except QAError as exc:
        log.error("could not bring the index up to date: %s", exc)
        ctx.startup_error = str(exc)
    try:
        # The seeds may be unreadable while an earlier index is fine: serve that one.
        service.start(update=False)
        log.warning("serving the existing index; it may not match the seeds folder")
    except QAError as exc:
        log.error("could not load the index either: %s", exc)
        ctx.startup_error = f"{ctx.startup_error}; loading the existing index failed: {exc}"


def create_app(
    settings: Settings | None = None,
    *,
    service: QAService | None = None,
    watch: bool = False,
    watch_debounce: float = 1.0,
) -> FastAPI:
    """The seedqa web app.

    ``settings`` default to :meth:`Settings.load` (``QA_*`` variables), read when this is called.
    A ``service`` passed in is used as it is (its settings win; the caller starts and closes it).
    ``watch`` follows the seeds folder and reindexes ``watch_debounce`` seconds after it changes.
    """
    if service is not None:
        settings = service.settings
    elif settings is None:
        settings = Settings.load()
    metrics = Metrics()
    ctx = AppContext(settings=settings, templates=make_templates(), metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = service is None
        if owned:
            # Building the index can take minutes; the thread keeps the event loop free.
            await run_in_threadpool(_start_service, ctx)
        else:
            ctx.service = service
        watcher = None
        if watch and ctx.service is not None:
            watcher = SeedWatcher(ctx.service, settings.seeds_dir, debounce=watch_debounce)
            watcher.start()
        try:
            yield
        finally:
            if watcher is not None:
                watcher.stop()
            if owned and ctx.service is not None:
                ctx.service.close()

    app = FastAPI(
        title="seedqa",
        summary="Questions answered from a folder of articles, with exact provenance.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    app.include_router(api.router)
    app.include_router(documents.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_docs(app)
    # Added innermost first: metrics see every status, including those of the guards.
    app.add_middleware(BodyGuardMiddleware, upload_max_bytes=settings.max_document_bytes)
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
