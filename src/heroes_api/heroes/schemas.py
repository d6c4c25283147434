"""The tutorial's model family: what clients send and what they get back."""

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, StringConstraints
from pydantic import Field as Constraint
from sqlmodel import Field, SQLModel

from heroes_api.models import INT32_MAX, TEXT_MAX_LENGTH, HeroBase


def _no_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL; pydantic already rejects unpaired surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _not_bool(value: Any) -> Any:
    """Lax integers take ``true`` as 1: a JSON boolean is a wrong type, not an age."""
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


# Documented in the OpenAPI schema too, so generated clients (and schemathesis) know NUL is out.
NO_NUL_PATTERN = r"^[^\x00]*$"
Text = Annotated[
    str,
    StringConstraints(max_length=TEXT_MAX_LENGTH),
    AfterValidator(_no_nul),
    Constraint(json_schema_extra={"pattern": NO_NUL_PATTERN}),
]
Age = Annotated[int, Constraint(ge=0, le=INT32_MAX), BeforeValidator(_not_bool)]


class HeroPublic(HeroBase):
    id: int


class HeroCreate(HeroBase):
    name: Text
    age: Age | None = None
    secret_name: Text


class HeroUpdate(SQLModel):
    """Only the fields sent change. `age` may be set to null; `name` and `secret_name` may be
    left out but not set to null."""

    # Plain strings whose default (from a factory, so the schema shows none) is never validated:
    # left out is fine, an explicit null is a 422. Read changes with model_dump(exclude_unset=True).
    name: Text = Field(default_factory=lambda: None)
    age: Age | None = None
    secret_name: Text = Field(default_factory=lambda: None)
