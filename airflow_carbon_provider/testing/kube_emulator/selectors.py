"""Label and field selectors, and node selection by node selector and required node affinity.

The emulator has no scheduler: a pod binds to the first node these predicates accept. The real
kube-scheduler (``tests/realk8s``) is what verifies our pods against real scheduling.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["SelectorError", "node_matches", "parse_field_selector", "parse_label_selector", "selector_predicate"]

class SelectorError(ValueError):
    """A label or field selector the emulator cannot parse."""


_Predicate = Callable[[dict[str, Any]], bool]
_KEY_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$")
_SET_RE = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    terms.append("".join(current).strip())
    return [t for t in terms if t]


def _check_key(key: str, selector: str) -> str:
    if not _KEY_RE.match(key):
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r} in {selector!r}")
    return key


def _parse_requirements(selector: str, *, labels: bool) -> list[tuple[str, str, frozenset[str]]]:
    """Parse a selector into ``(operator, key, values)`` requirements."""
    requirements: list[tuple[str, str, frozenset[str]]] = []
    for term in _split_terms(selector):
        set_match = _SET_RE.match(term) if labels else None
        if set_match:
            values = frozenset(v.strip() for v in set_match.group(3).split(",") if v.strip())
            requirements.append((set_match.group(2), _check_key(set_match.group(1), selector), values))
        elif "!=" in term:
            key, _, value = term.partition("!=")
            requirements.append(("!=", key.strip(), frozenset([value.strip()])))
        elif "=" in term:
            key, _, value = term.partition("==") if "==" in term else term.partition("=")
            requirements.append(("=", key.strip(), frozenset([value.strip()])))
        elif labels and term.startswith("!"):
            requirements.append(("!", _check_key(term[1:].strip(), selector), frozenset()))
        elif labels:
            requirements.append(("exists", _check_key(term, selector), frozenset()))
        else:
            raise SelectorError(f"invalid selector: {selector!r}; can't understand {term!r}")
    if labels:
        for _, key, _ in requirements:
            _check_key(key, selector)
    return requirements


def _satisfies(
    requirements: list[tuple[str, str, frozenset[str]]], lookup: Callable[[str], str | None]
) -> bool:
    for operator, key, values in requirements:
        value = lookup(key)
        if operator in ("=", "in") and value not in values:
            return False
        if operator in ("!=", "notin") and value in values:
            return False
        if operator == "exists" and value is None:
            return False
        if operator == "!" and value is not None:
            return False
    return True


def parse_label_selector(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """Return a predicate over a label mapping for a Kubernetes label selector.

    Equality (``a=b``, ``a==b``, ``a!=b``), existence (``a``, ``!a``) and set
    (``a in (x,y)``, ``a notin (x,y)``) requirements are supported, comma-joined.
    """
    requirements = _parse_requirements(selector, labels=True)
    return lambda labels: _satisfies(requirements, labels.get)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return ""
        value = value.get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_field_selector(selector: str) -> _Predicate:
    """Return a predicate over an object for a field selector (``a.b=c``, ``a.b!=c``)."""
    requirements = _parse_requirements(selector, labels=False)
    return lambda obj: _satisfies(requirements, lambda path: _field_value(obj, path))


def selector_predicate(query: Mapping[str, str]) -> _Predicate:
    labels = parse_label_selector(query.get("labelSelector", ""))
    fields = parse_field_selector(query.get("fieldSelector", ""))
    return lambda obj: labels((obj.get("metadata") or {}).get("labels") or {}) and fields(obj)


def node_matches(node_labels: Mapping[str, str], pod: Mapping[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if node_labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    return any(_term_matches(node_labels, term) for term in terms)


def _term_matches(node_labels: Mapping[str, str], term: Mapping[str, Any]) -> bool:
    for expression in term.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        present = key in node_labels
        if operator == "In" and not (present and node_labels[key] in values):
            return False
        if operator == "NotIn" and present and node_labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True
