"""Request and response models of mappings and the template preview (they make the OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from gateway.constants import MAPPING_NAME_PATTERN
from gateway.dialects.engine import ExpressionError, compile_expression
from gateway.dialects.templates import check_template

MappingName = Annotated[str, StringConstraints(pattern=MAPPING_NAME_PATTERN)]
Description = Annotated[str, StringConstraints(max_length=500)]
EXPRESSION_DESCRIPTION = (
    "A JSONata expression from the incoming body (JSON, form or query, as an object) to "
    "postback fields."
)
_EXAMPLE = (
    '{"email": contact_email, "first_name": $substringBefore(contact_name, " "), '
    '"company": company_name, "source": "salesos"}'
)


def check_mapping(text: str) -> str:
    """`text` if it compiles; ValueError carrying the engine's message otherwise."""
    try:
        compile_expression(text)
    except ExpressionError as e:
        raise PydanticCustomError(
            "mapping", "the mapping does not compile: {reason}", {"reason": str(e)}
        ) from e
    return text


class MappingIn(BaseModel):
    """A new sender mapping, chosen by `?mapping=NAME` or by an API key's default."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "salesos", "expression": _EXAMPLE}]},
    )

    name: MappingName = Field(description="Lowercase letters, digits, `-` and `_`.")
    expression: str = Field(description=EXPRESSION_DESCRIPTION)
    description: Description | None = None

    _expression = field_validator("expression")(check_mapping)


class MappingPatch(BaseModel):
    """Change a mapping's expression or description."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"description": "SalesOS web forms"}]}
    )

    expression: str | None = Field(None, description=EXPRESSION_DESCRIPTION)
    description: Description | None = None

    _expression = field_validator("expression")(lambda v: v if v is None else check_mapping(v))


class Mapping(BaseModel):
    name: str
    expression: str
    description: str | None
    created_at: datetime
    updated_at: datetime


class MappingResponse(BaseModel):
    data: Mapping


class MappingList(BaseModel):
    data: list[Mapping]


class MappingDeleted(BaseModel):
    name: str
    deleted: bool


class TemplatePreviewIn(BaseModel):
    """A template to try on an event (without one, a sample `lead.created`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"template": '{"event": type, "email": data.email}'}]},
    )

    template: str = Field(description="A JSONata expression, as an endpoint's `template`.")
    event: dict[str, Any] | None = Field(
        None, description="The event to render, as Leadgate sends it: {id, type, timestamp, data}."
    )

    _template = field_validator("template")(check_template)


class TemplatePreview(BaseModel):
    body: str = Field(description="The exact body an endpoint with this template would be sent.")
    result: Any = Field(description="The same body, parsed.")
    event: dict[str, Any] = Field(description="The event it was rendered from.")
