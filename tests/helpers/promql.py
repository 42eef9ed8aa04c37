"""Reading PromQL for the monitoring tests, without a PromQL library: the metric names an
expression selects, the operands of its comparisons and set operations, and a Grafana query
with its variables filled in.

The scanner knows strings, label matchers `{…}`, ranges `[…]`, parentheses and the grouping
clauses (`by (…)`, `on (…)` …); that is all the expressions of config/ need.
"""

from __future__ import annotations

import re

# Series Prometheus makes itself rather than scraping them.
PROMETHEUS_OWN = frozenset(
    {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"}
)
KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
OPERATOR_WORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2"})
AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile"}
)
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
# Lowest precedence first.
SET_OPERATORS = (("or",), ("and", "unless"))
COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
MODIFIER = re.compile(r"^\s*(?:bool\b|(?:on|ignoring|group_left|group_right)\s*\([^)]*\))\s*")
CLOSING = {"(": ")", "[": "]", "{": "}"}


def _skip(expr: str, i: int) -> int:
    """The index after the string or bracketed group starting at `i` (which opens one)."""
    opener = expr[i]
    if opener in "\"'`":
        j = i + 1
        while expr[j] != opener:
            j += 2 if expr[j] == "\\" and opener != "`" else 1
        return j + 1
    depth, j = 0, i
    while True:
        ch = expr[j]
        if ch in "\"'`":
            j = _skip(expr, j)
            continue
        if ch == opener:
            depth += 1
        elif ch == CLOSING[opener]:
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects (`foo` in `rate(foo{a="b"}[5m])`)."""
    names: set[str] = set()
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch in "\"'`{[":
            i = _skip(expr, i)
            continue
        match = IDENTIFIER.match(expr, i)
        if match is None or (i and (expr[i - 1].isalnum() or expr[i - 1] in "_.")):
            i += 1
            continue
        word, i = match[0], match.end()
        rest = expr[i:].lstrip()
        if word in KEYWORDS and rest.startswith("("):
            i = _skip(expr, len(expr) - len(rest))
        elif not rest.startswith("(") and word not in OPERATOR_WORDS | KEYWORDS | AGGREGATIONS:
            names.add(word)
    return names


def _top_level(expr: str) -> list[int]:
    """The indexes of `expr` outside any string or bracket."""
    out, i = [], 0
    while i < len(expr):
        if expr[i] in "\"'`([{":
            i = _skip(expr, i)
        else:
            out.append(i)
            i += 1
    return out


def _split(expr: str) -> list[str] | None:
    """`expr`'s operands at its loosest top-level binary operator, or None."""
    positions = _top_level(expr)
    for words in SET_OPERATORS:
        cuts = []
        for i in positions:
            for word in words:
                end = i + len(word)
                if (
                    expr.startswith(word, i)
                    and (i == 0 or not (expr[i - 1].isalnum() or expr[i - 1] == "_"))
                    and (end >= len(expr) or not (expr[end].isalnum() or expr[end] == "_"))
                ):
                    cuts.append((i, end))
        if cuts:
            return _cut(expr, cuts)
    cuts, taken = [], -1
    for i in positions:
        if i <= taken:
            continue
        for op in COMPARISONS:
            if expr.startswith(op, i):
                cuts.append((i, i + len(op)))
                taken = i + len(op) - 1
                break
    return _cut(expr, cuts) if cuts else None


def _cut(expr: str, cuts: list[tuple[int, int]]) -> list[str]:
    parts, start = [], 0
    for begin, end in cuts:
        parts.append(expr[start:begin])
        start = end
    parts.append(expr[start:])
    return [MODIFIER.sub("", part).strip() for part in parts]


def operands(expr: str) -> list[str]:
    """The innermost operands of `expr`'s top-level comparisons and set operations, numbers
    left out: what an alert compares, each on its own (`a / b > 0.1 and on () c >= 5` gives
    `a / b` and `c`)."""
    expr = expr.strip()
    parts = _split(expr)
    if parts is not None:
        return [leaf for part in parts for leaf in operands(part)]
    if expr.startswith("(") and _skip(expr, 0) == len(expr):
        return operands(expr[1:-1])
    try:
        float(expr)
    except ValueError:
        return [expr]
    return []


def grafana_query(expr: str, variables: dict[str, str], rate_interval: str) -> str:
    """A Grafana panel's query as Grafana would send it: `$__rate_interval`, `$__interval`,
    `$__range` and the dashboard's variables (`$name`, `${name}`) replaced."""
    out = expr.replace("$__rate_interval", rate_interval)
    out = out.replace("$__interval", rate_interval).replace("$__range", rate_interval)
    for name, value in variables.items():
        out = out.replace(f"${{{name}}}", value)
        out = re.sub(rf"\${re.escape(name)}\b", value, out)
    assert "$" not in out, f"a variable is left in {out!r}"
    return out
