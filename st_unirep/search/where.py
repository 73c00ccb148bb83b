"""``--where KEY=VALUE`` payload filters: how a value on the command line is typed, and the keys of a filter.

The rule (``KEY=VALUE``, one condition per ``--where``, all of them must hold):

* ``"text"`` or ``'text'`` (quoted): the string ``text`` only (``page='3'`` matches ``"3"``, not ``3``);
* ``true`` / ``false`` (any case): the boolean, or the string as written;
* an integer (``3``, ``-12``): the number (an int or float payload equal to it), or the string as written;
* a decimal number (``2.5``, ``1e3``): the number, or the string as written;
* anything else: the string as written (``metadata.company=BOOK TA .K``).

So ``metadata.page=3`` matches a JSON Lines row with ``"page": 3`` and one with ``"page": "3"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from qdrant_client import models

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
_EXACT_FLOAT_INT = 2**53  # beyond this an int has no exact float twin: match it as an int only


def where_condition(condition: str) -> models.FieldCondition | models.Filter:
    """The Qdrant condition of one ``KEY=VALUE`` (see the module for how the value is typed)."""
    key, sep, value = condition.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--where expects KEY=VALUE (e.g. metadata.company=ABC), got {condition!r}")
    alternatives: list[models.FieldCondition] = []

    def match(typed: Any) -> None:
        alternatives.append(models.FieldCondition(key=key, match=models.MatchValue(value=typed)))

    def equal_number(number: float) -> None:
        alternatives.append(models.FieldCondition(key=key, range=models.Range(gte=number, lte=number)))

    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        match(value[1:-1])
    elif value.lower() in ("true", "false"):
        match(value.lower() == "true")
        match(value)
    elif _INT.fullmatch(value):
        match(int(value))
        if abs(int(value)) <= _EXACT_FLOAT_INT:
            equal_number(float(int(value)))  # a float payload 3.0
        match(value)
    elif _FLOAT.fullmatch(value):
        equal_number(float(value))
        match(value)
    else:
        match(value)
    return alternatives[0] if len(alternatives) == 1 else models.Filter(should=alternatives)


def where_filter(conditions: Sequence[str]) -> models.Filter | None:
    """The filter that all ``KEY=VALUE`` conditions must hold (None for none)."""
    must = [where_condition(condition) for condition in conditions]
    return models.Filter(must=must) if must else None


def filter_keys(query_filter: Any) -> list[str]:
    """The payload keys a Qdrant filter tests, in order, each once (nested filters included)."""
    keys: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, models.FieldCondition):
            keys.append(node.key)
        elif isinstance(node, models.Filter):
            for clause in (node.must, node.should, node.must_not):
                for child in [clause] if isinstance(clause, models.Filter | models.FieldCondition) else clause or []:
                    walk(child)
            if node.min_should is not None:
                for child in node.min_should.conditions:
                    walk(child)

    walk(query_filter)
    return list(dict.fromkeys(keys))
