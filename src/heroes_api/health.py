"""``GET /health`` (readiness): the database answers and its schema is the one this code needs.
``GET /health/live`` (liveness): the process answers; no database involved."""

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from heroes_api.db import schema_problem
from heroes_api.errors import count_db_error, is_database_down

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
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            problem = await schema_problem(request.app.state.engine)
    except Exception as exc:
        if not is_database_down(exc):
            raise
        logger.warning("health check: database unreachable: %s", type(exc).__name__)
        count_db_error(request, exc, 503)
        problem = "database unreachable"
    if problem is None:
        return Healthy()
    return JSONResponse(Unhealthy(detail=problem).model_dump(), status_code=503)


@router.get("/health/live", response_model=Healthy, summary="Process liveness (no database)")
async def live() -> Healthy:
    return Healthy()
