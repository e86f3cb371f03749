"""The run record as a typed model (pydantic), the one declaration of what each field holds.

:func:`dfbench.app.records.record_problem` validates every record read against :class:`RunRecord`
(after the checks whose wording users rely on: schema, identity, status, metrics) and then checks
what a type cannot say (the config hash recomputed from the config). Fields dfbench does not know,
a plugin's or a newer version's, are kept (``extra="allow"``): a record is read, never rewritten.
``RunRecord.model_json_schema()`` is the record's JSON schema (docs/api.md).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

Number = StrictFloat | StrictInt


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")


class Suite(_Part):
    """Which suite row made the record."""

    name: Optional[StrictStr] = None
    label: Optional[StrictStr] = None
    seeds: Optional[list[StrictInt]] = None


class Timing(_Part):
    """Seconds spent per phase (data, teachers, train, eval, total; cpu seconds)."""

    data: Optional[Number] = None
    teachers: Optional[Number] = None
    train: Optional[Number] = None
    eval: Optional[Number] = None
    total: Optional[Number] = None
    cpu: Optional[Number] = None


class Selection(_Part):
    """The round validation chose (``params.select``) and of how many."""

    select: Optional[StrictStr] = None
    split: Optional[StrictStr] = None
    metric: Optional[StrictStr] = None
    round: Optional[StrictInt] = None
    value: Optional[Number] = None
    rounds: Optional[StrictInt] = None


class Budget(_Part):
    """The compute a data-free run spent: teacher image passes, rounds, the budget asked."""

    teacher_images: Optional[Number] = None
    rounds: Optional[StrictInt] = None
    budget: Optional[Number] = None


class AnytimePoint(_Part):
    """One validation evaluation along training."""

    round: Optional[StrictInt] = None
    value: Optional[Number] = None
    metric: Optional[StrictStr] = None


class RunRecord(_Part):
    """One run: what ran (method, dataset, resolved config and its hash, seed), how it ended
    (status, metrics, error), on what (teachers, data, environment) and what it cost (timing,
    budget). Every reader goes through this model (:func:`dfbench.app.records.record_problem`)."""

    schema_: StrictStr = Field(alias="schema")
    run_id: Optional[StrictStr] = None
    method: StrictStr
    dataset: StrictStr
    profile: Optional[StrictStr] = None
    seed: StrictInt
    status: Literal["completed", "failed", "running"]
    error: Optional[Any] = None
    metrics: Optional[dict[StrictStr, Number]] = None
    config: dict[StrictStr, Any]
    config_hash: StrictStr
    components: Optional[dict[StrictStr, Any]] = None
    teachers: Optional[dict[StrictStr, Any]] = None
    timing: Optional[Timing] = None
    env: Optional[dict[StrictStr, Any]] = None
    world_size: Optional[StrictInt] = None
    started_at: Optional[StrictStr] = None
    finished_at: Optional[StrictStr] = None
    artifacts: Optional[StrictStr] = None
    suite: Optional[Suite] = None
    data: Optional[dict[StrictStr, Any]] = None
    synthesis: Optional[dict[StrictStr, Any]] = None
    budget: Optional[Budget] = None
    anytime: Optional[list[AnytimePoint]] = None
    selection: Optional[Selection] = None
    pictures: Optional[list[StrictStr]] = None
    per_query: Optional[StrictStr] = None


#: what each pydantic error type says a value should have been
_EXPECTED = {
    "dict_type": "an object", "model_type": "an object", "model_attributes_type": "an object",
    "string_type": "a string", "list_type": "a list", "int_type": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "bool_type": "true or false", "literal_error": "one of the allowed values",
    "missing": "present",
}


#: the tags pydantic adds to a location inside a union (Number = StrictFloat | StrictInt)
_UNION_TAGS = {"float", "int", "str"}


def _where(loc: tuple) -> str:
    parts = [str(p) for p in loc if p != "schema_" and p not in _UNION_TAGS]
    if len(parts) == 1:
        return f"'{parts[0]}'"
    return " ".join(parts)


def type_problem(rec: dict) -> str | None:
    """The first way ``rec`` does not fit :class:`RunRecord`, in words, or None when it fits."""
    try:
        RunRecord.model_validate(rec)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        expected = _EXPECTED.get(err["type"], err["msg"].lower())
        if err["type"] == "missing":
            return f"it has no {_where(err['loc'])}"
        value = err.get("input")
        return f"its {_where(err['loc'])} is a {type(value).__name__}, not {expected}"
    except RecursionError:
        return "it is nested too deeply to be a record"
    return None
