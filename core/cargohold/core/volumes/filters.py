"""Docker-style filters for listing and pruning volumes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cargohold.core.api.errors import InvalidArgument

Filters = dict[str, set[str]]

LIST_FILTERS = frozenset({"dangling", "driver", "label", "label!", "name"})
# prune only ever removes unused volumes: dangling=true is what it does anyway,
# dangling=false selects nothing it may remove
PRUNE_FILTERS = frozenset({"label", "label!", "all", "dangling"})


def parse_filters(pairs: Iterable[str], allowed: frozenset[str]) -> Filters:
    """``["label=a=b", "dangling=true"]`` (the CLI's ``--filter``) -> filters."""
    filters: Filters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidArgument(f"bad filter {pair!r}: write key=value, such as label=env=prod")
        filters.setdefault(key.strip(), set()).add(value)
    return check_filters(filters, allowed)


def filters_from_api(raw: Mapping[str, object], allowed: frozenset[str]) -> Filters:
    """The Engine API's forms: ``{"label": {"a=b": true}}`` or ``{"label": ["a=b"]}``."""
    filters: Filters = {}
    for key, values in raw.items():
        if isinstance(values, Mapping):
            filters[key] = {str(v) for v, on in values.items() if on}
        elif isinstance(values, list):
            filters[key] = {str(v) for v in values}
        else:
            raise InvalidArgument(f"bad filter {key!r}: expected a list or a map of values")
    return check_filters(filters, allowed)


def check_filters(filters: Filters, allowed: frozenset[str]) -> Filters:
    for key in filters:
        if key not in allowed:
            raise InvalidArgument(
                f"invalid filter {key!r}: valid filters are {', '.join(sorted(allowed))}"
            )
    for key in ("dangling", "all"):
        for value in filters.get(key, ()):
            if value.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter {key}={value!r}: use true or false")
    return filters


def truthy(filters: Filters, key: str) -> bool | None:
    values = filters.get(key)
    if not values:
        return None
    return any(v.lower() in ("true", "1") for v in values)


def labels_match(labels: Mapping[str, str], wanted: Iterable[str], *, negate: bool = False) -> bool:
    """Docker's rule: every ``k`` / ``k=v`` must match (or, negated, none may)."""
    for expr in wanted:
        key, sep, value = expr.partition("=")
        hit = key in labels and (not sep or labels[key] == value)
        if hit == negate:
            return False
    return True
