"""What routes depend on, as ``Annotated`` aliases (tests swap them: ``dependency_overrides``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated, cast

from fastapi import Depends, HTTPException, Request
from fastapi.templating import Jinja2Templates

from qa.ask.service import QAService
from qa.config import Settings
from web.metrics import Metrics


@dataclass
class AppContext:
    """Everything one app holds; kept on ``app.state.ctx``."""

    settings: Settings
    templates: Jinja2Templates
    metrics: Metrics
    service: QAService | None = None
    #: Why the service could not start, shown by /healthz and the pages.
    startup_error: str | None = None
    #: One HTTP reindex at a time; a second one gets 409 instead of queueing.
    reindex_lock: threading.Lock = field(default_factory=threading.Lock)


def get_context(request: Request) -> AppContext:
    """The app's context."""
    return cast(AppContext, request.app.state.ctx)


Context = Annotated[AppContext, Depends(get_context)]


def get_settings(ctx: Context) -> Settings:
    """The app's settings."""
    return ctx.settings


def get_service(ctx: Context) -> QAService:
    """The running service, or 503 when the app's lifespan has not started it."""
    if ctx.service is None:
        raise HTTPException(503, ctx.startup_error or "the service is not started")
    return ctx.service


def get_templates(ctx: Context) -> Jinja2Templates:
    """The page templates."""
    return ctx.templates


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[QAService, Depends(get_service)]
TemplatesDep = Annotated[Jinja2Templates, Depends(get_templates)]
