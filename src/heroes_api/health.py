"""``GET /health`` (readiness): the database answers and its schema is the one this code needs.
``GET /health/live`` (liveness): the process answers; no database involved."""

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from heroes_api.db import schema_problem
from heroes_api.errors import DatabaseUnavailable
from heroes_api.state import app_state

router = APIRouter(tags=["health"])
logger = logging.getLogger(__name__)
HEALTH_TIMEOUT_SECONDS = 5.0


class Healthy(BaseModel):
    status: Literal["ok"] = "ok"


class Unhealthy(BaseModel):
    status: Literal["unavailable"] = "unavailable"
    detail: str


@router.get(
    "/health",
    response_model=Healthy,
    responses={503: {"model": Unhealthy, "description": "Database down or schema not migrated"}},
    summary="Service health",
)
async def health(request: Request) -> Healthy | JSONResponse:
    shared = app_state(request.app)
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            problem = await schema_problem(shared.engine)
    except (DatabaseUnavailable, TimeoutError) as exc:
        cause = type(exc.__cause__ or exc).__name__
        logger.warning("health check: database unreachable: %s", cause)
        if shared.metrics is not None:
            shared.metrics.count_db_error(cause, 503)
        problem = "database unreachable"
    if problem is None:
        return Healthy()
    return JSONResponse(Unhealthy(detail=problem).model_dump(), status_code=503)


@router.get("/health/live", response_model=Healthy, summary="Process liveness (no database)")
async def live() -> Healthy:
    return Healthy()
