"""The ceiling: heroes_api's routes and response models answering from a dict, no database.

Served by bench/run.py with the same uvicorn flags as the service, so the ratio service/ceiling
shows what the database path costs. ``BENCH_SEED_ROWS`` heroes exist at startup.
"""

import itertools
import os
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query

from heroes_api.heroes.router import NOT_FOUND, HeroId
from heroes_api.heroes.schemas import HeroCreate, HeroPublic, HeroUpdate
from heroes_api.models import INT64_MAX

app = FastAPI(title="Heroes API ceiling")
heroes: dict[int, HeroPublic] = {
    n: HeroPublic(id=n, name=f"Hero {n}", age=n % 100)
    for n in range(1, int(os.environ.get("BENCH_SEED_ROWS", "1000")) + 1)
}
secret_names: dict[int, str] = dict.fromkeys(heroes, "Secret")
next_id = itertools.count(len(heroes) + 1)


def _get(hero_id: int) -> HeroPublic:
    if (hero := heroes.get(hero_id)) is None:
        raise HTTPException(404, "Hero not found")
    return hero


@app.post("/heroes/", response_model=HeroPublic)
async def create_hero(hero: HeroCreate) -> HeroPublic:
    hero_id = next(next_id)
    heroes[hero_id] = HeroPublic(id=hero_id, name=hero.name, age=hero.age)
    secret_names[hero_id] = hero.secret_name
    return heroes[hero_id]


@app.get("/heroes/", response_model=list[HeroPublic])
async def read_heroes(
    offset: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
) -> list[HeroPublic]:
    return list(itertools.islice(heroes.values(), offset, offset + limit))


@app.get("/heroes/{hero_id}", response_model=HeroPublic, responses=NOT_FOUND)
async def read_hero(hero_id: HeroId) -> HeroPublic:
    return _get(hero_id)


@app.patch("/heroes/{hero_id}", response_model=HeroPublic, responses=NOT_FOUND)
async def update_hero(hero_id: HeroId, hero: HeroUpdate) -> HeroPublic:
    current = _get(hero_id)
    changes = hero.model_dump(exclude_unset=True)
    if (secret_name := changes.pop("secret_name", None)) is not None:
        secret_names[hero_id] = secret_name
    heroes[hero_id] = current.model_copy(update=changes)
    return heroes[hero_id]


@app.delete("/heroes/{hero_id}", responses=NOT_FOUND)
async def delete_hero(hero_id: HeroId) -> dict[str, bool]:
    _get(hero_id)
    del heroes[hero_id], secret_names[hero_id]
    return {"ok": True}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
