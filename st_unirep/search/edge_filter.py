"""Qdrant filters (``qdrant_client.models``, the public filter type of ``SearchIndex.query``) in Qdrant Edge's types.

The two packages model the same filter language with different classes. The conditions a search filter needs are
translated (must / should / must_not / min_should, field match on a value, any value or all but some values, text,
numeric range, values count, is-empty, is-null, has-id, nested filters); anything else raises ``ValueError`` naming
it, never a filter that silently matches more or less.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import qdrant_edge as edge
from qdrant_client import models


def to_edge_filter(query_filter: models.Filter | None) -> edge.Filter | None:
    """The Qdrant Edge filter equal to ``query_filter`` (None stays None)."""
    if query_filter is None:
        return None
    if not isinstance(query_filter, models.Filter):
        raise ValueError(f"query_filter must be a qdrant_client.models.Filter, got {type(query_filter).__name__}")
    return _filter(query_filter)


def _clause(conditions: Any) -> list[Any] | None:
    if conditions is None:
        return None
    if not isinstance(conditions, list):
        conditions = [conditions]
    return [_condition(condition) for condition in conditions]


def _filter(node: models.Filter) -> edge.Filter:
    min_should = None
    if node.min_should is not None:
        min_should = edge.MinShould(conditions=_clause(node.min_should.conditions), min_count=node.min_should.min_count)
    return edge.Filter(
        must=_clause(node.must), should=_clause(node.should), must_not=_clause(node.must_not), min_should=min_should
    )


def _condition(node: Any) -> Any:
    if isinstance(node, models.Filter):
        return _filter(node)
    if isinstance(node, models.FieldCondition):
        return _field(node)
    if isinstance(node, models.IsEmptyCondition):
        return edge.IsEmptyCondition(key=node.is_empty.key)
    if isinstance(node, models.IsNullCondition):
        return edge.IsNullCondition(key=node.is_null.key)
    if isinstance(node, models.HasIdCondition):
        return edge.HasIdCondition(point_ids={str(point) for point in node.has_id})
    if isinstance(node, models.NestedCondition):
        return edge.NestedCondition(key=node.nested.key, filter=_filter(node.nested.filter))
    raise ValueError(f"The embedded index does not support the filter condition {type(node).__name__}")


def _field(node: models.FieldCondition) -> edge.FieldCondition:
    unsupported = [name for name in ("geo_bounding_box", "geo_radius", "geo_polygon") if getattr(node, name)]
    if unsupported:
        raise ValueError(f"The embedded index does not support {unsupported[0]} conditions (key {node.key!r})")
    values_count = None
    if node.values_count is not None:
        count = node.values_count
        values_count = edge.ValuesCount(lt=count.lt, gt=count.gt, gte=count.gte, lte=count.lte)
    return edge.FieldCondition(
        key=node.key,
        match=_match(node.match, node.key),
        range=_range(node.range, node.key),
        values_count=values_count,
        is_empty=node.is_empty,
        is_null=node.is_null,
    )


def _match(match: Any, key: str) -> Any:
    if match is None:
        return None
    if isinstance(match, models.MatchValue):
        # qdrant-edge-py 0.9 reads a Python bool as the integer 0/1 (bool subclasses int), so MatchValue(True) would
        # match the number 1 and never a JSON true; numpy's bool is not an int and arrives as a boolean.
        return edge.MatchValue(np.bool_(match.value) if isinstance(match.value, bool) else match.value)
    if isinstance(match, models.MatchAny):
        return edge.MatchAny(match.any)
    if isinstance(match, models.MatchExcept):
        return edge.MatchExcept(match.except_)
    if isinstance(match, models.MatchText):
        return edge.MatchText(match.text)
    raise ValueError(f"The embedded index does not support the match {type(match).__name__} (key {key!r})")


def _range(bounds: Any, key: str) -> Any:
    if bounds is None:
        return None
    if isinstance(bounds, models.Range):
        return edge.RangeFloat(lt=bounds.lt, gt=bounds.gt, gte=bounds.gte, lte=bounds.lte)
    raise ValueError(f"The embedded index does not support the range {type(bounds).__name__} (key {key!r})")
