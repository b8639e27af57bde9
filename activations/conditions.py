"""Journey conditions: SQL boolean expressions an analytics engineer writes over profile columns,
checked against an allow-list and compiled to the warehouse's dialect by sqlglot.

`churn_risk_score >= 0.7 and rfm_segment in ('champions', 'loyal')` is a condition;
`1 = 1; drop table dim_people`, a subquery, a function off the list or an unknown column is not:
it is refused at validation time with the offending text. User text is never pasted into SQL:
the parsed tree is what gets compiled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

# What a condition may be built from. Anything else (Select, Subquery, Anonymous functions,
# Star, Dot, Command, ...) is refused.
_ALLOWED: tuple[type[exp.Expression], ...] = (
    exp.Column,
    exp.Identifier,
    exp.Literal,
    exp.Boolean,
    exp.Null,
    exp.Paren,
    exp.Tuple,
    exp.And,
    exp.Or,
    exp.Not,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.In,
    exp.Between,
    exp.Is,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Neg,
    exp.Coalesce,
    exp.CurrentDate,
    exp.CurrentTimestamp,
    exp.DateDiff,
    exp.DateAdd,
    exp.DateSub,
    exp.Interval,
)
# What the whole condition must be: something true or false.
_PREDICATES: tuple[type[exp.Expression], ...] = (
    exp.And, exp.Or, exp.Not, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE,
    exp.In, exp.Between, exp.Is, exp.Boolean,
)  # fmt: skip
# A bare keyword is only allowed as the unit of an interval or a date function, and only one of
# these: some dialects print a unit as written, so it must never carry text of the author's.
_UNIT_PARENTS = (exp.Interval, exp.DateDiff, exp.DateAdd, exp.DateSub)
UNITS = frozenset({"SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "QUARTER", "YEAR"})
_INTERVAL_TEXT = re.compile(r"^\s*\d+(\s+[A-Za-z]+)?\s*$")


class ConditionError(ValueError):
    """A condition that is not allowed; the message quotes the offending text."""


@dataclass(frozen=True)
class Condition:
    text: str
    tree: exp.Expr

    @property
    def columns(self) -> frozenset[str]:
        return frozenset(c.name for c in self.tree.find_all(exp.Column))

    def sql(self, dialect: str = "duckdb", table: str | None = None, now: str | None = None) -> str:
        """The condition in the target's dialect, every column quoted (and of `table`, if given:
        the engine joins the profile to its own columns). With `now` (an expression of the
        caller's), current_date and current_timestamp read that clock instead of the wall's, so
        a backfill or a preview at another time decides as it would have then."""
        clock = sqlglot.parse_one(now, read=dialect) if now else None

        def rewrite(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.Column) and table is not None:
                owner = exp.to_identifier(table, quoted=True)
                return exp.column(node.name, table=owner, quoted=True)
            if clock is not None and isinstance(node, exp.CurrentTimestamp):
                return clock.copy()
            if clock is not None and isinstance(node, exp.CurrentDate):
                return exp.cast(clock.copy(), "date")
            return node

        return self.tree.transform(rewrite).sql(dialect=dialect)

    def json_sql(self, json_column: str, dialect: str = "duckdb", now: str | None = None) -> str:
        """The condition over the keys of a JSON text column (an event's properties): each name
        reads `$.name`, as a number where it meets a number (`cart_value >= 50`, arithmetic,
        `between 1 and 9`), as a boolean where it meets true/false, else as text. A missing key
        or a value that is not a number is null, so the condition is not true for it."""
        source = exp.column(json_column, quoted=True)

        def typed(node: exp.Expr) -> exp.Expr:
            if not isinstance(node, exp.Column):
                return node
            # A path tree, not text: each dialect writes its own ($."a.b", $['a.b'], a.b).
            path = exp.JSONPath(expressions=[exp.JSONPathRoot(), exp.JSONPathKey(this=node.name)])
            value: exp.Expr = exp.JSONExtractScalar(this=source.copy(), expression=path)
            kind = _json_type(node)
            if kind is None:
                return value
            return exp.TryCast(this=value, to=exp.DataType.build(kind), safe=True)

        return Condition(self.text, self.tree.transform(typed)).sql(dialect=dialect, now=now)


def parse_condition(
    text: str, columns: Collection[str] | None, read_dialect: str = "duckdb"
) -> Condition:
    """Parse and check `text`: one boolean expression over `columns` and the allowed operators.
    `columns=None` allows any plain name: an event's properties, which no model declares."""
    if not text or not text.strip():
        raise ConditionError("a condition is empty")
    try:
        statements = sqlglot.parse(text, read=read_dialect)
    except ParseError as exc:
        raise ConditionError(f"condition {text!r} does not parse: {exc}") from None
    if len(statements) != 1 or statements[0] is None:
        raise ConditionError(f"condition {text!r} must be one expression, not several statements")
    tree = statements[0]
    _check_interval_texts(text, read_dialect)
    for node in tree.walk():
        if node.comments:
            raise ConditionError(f"condition {text!r}: comments are not allowed")
        if isinstance(node, exp.Var) and isinstance(node.parent, _UNIT_PARENTS):
            if node.name.upper().removesuffix("S") not in UNITS:
                raise ConditionError(
                    f"condition {text!r}: {node.name!r} is not a time unit "
                    f"(one of {', '.join(sorted(UNITS)).lower()})"
                )
            continue
        _check_shape(text, node)
        if not isinstance(node, _ALLOWED):
            raise ConditionError(
                f"condition {text!r}: {node.sql(dialect=read_dialect)!r} is not allowed "
                f"({type(node).__name__}); use profile columns, literals, comparisons, "
                "and/or/not, in, between, is null, coalesce and date arithmetic"
            )
        if isinstance(node, exp.In) and node.args.get("query") is not None:
            raise ConditionError(f"condition {text!r}: a subquery is not allowed")
        if isinstance(node, exp.Column):
            if node.table or node.args.get("db") or node.args.get("catalog"):
                raise ConditionError(
                    f"condition {text!r}: {node.sql()!r} names a table; use the column alone"
                )
            if columns is not None and node.name not in columns:
                raise ConditionError(
                    f"condition {text!r}: unknown column {node.name!r}; known: "
                    f"{', '.join(sorted(columns))}"
                )
    if not _is_predicate(tree):
        raise ConditionError(f"condition {text!r} is not a true/false expression")
    if columns is None:
        _check_over_properties(text, tree)
        _try_over_properties(text, Condition(text, tree))

    def canonical(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column):
            return exp.column(node.name, quoted=True)  # every column quoted
        if isinstance(node, exp.Var) and isinstance(node.parent, _UNIT_PARENTS):
            return exp.var(node.name.upper().removesuffix("S"))  # DAYS -> DAY
        return node

    return Condition(text, tree.transform(canonical))


_NUMERIC_PARENTS = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Neg, exp.DateAdd, exp.DateSub)
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)


def _json_type(node: exp.Expr) -> str | None:
    """What a JSON value is read as, from what it meets: `double`, `boolean` or None (text)."""
    parent = node.parent
    if isinstance(parent, exp.Paren):
        return _json_type(parent)
    if isinstance(parent, exp.Coalesce):  # typed by its literal fallbacks, else by its context
        fallbacks = [a for a in (parent.this, *parent.expressions) if a is not node]
        if fallbacks and all(_is_number(a) for a in fallbacks):
            return "double"
        if fallbacks and all(isinstance(a, exp.Boolean) for a in fallbacks):
            return "boolean"
        return _json_type(parent)
    if isinstance(parent, _NUMERIC_PARENTS):
        return "double"
    if isinstance(parent, exp.Is) and isinstance(parent.expression, exp.Boolean):
        return "boolean"
    others: list[exp.Expr] = []
    if isinstance(parent, _COMPARISONS):
        others = [parent.left if parent.right is node else parent.right]
    elif isinstance(parent, exp.In):
        others = list(parent.expressions)
    elif isinstance(parent, exp.Between):
        others = [parent.args["low"], parent.args["high"]]
    if others and all(_is_number(o) for o in others):
        return "double"
    if others and all(isinstance(o, exp.Boolean) for o in others):
        return "boolean"
    return None


def _is_number(node: exp.Expr) -> bool:
    inner = node.this if isinstance(node, exp.Neg) else node
    return (isinstance(inner, exp.Literal) and inner.is_number) or isinstance(
        inner, _NUMERIC_PARENTS
    )


_NOT_OVER_PROPERTIES = (
    exp.CurrentDate, exp.CurrentTimestamp, exp.DateDiff, exp.DateAdd, exp.DateSub, exp.Interval,
)  # fmt: skip


def _check_over_properties(text: str, tree: exp.Expr) -> None:
    """An event's properties are JSON values, typed by the literal they meet: no dates (a JSON
    value has no date type), no two properties compared (nothing to type them by), and an `in`
    list of one kind (numbers or text)."""
    for node in tree.walk():
        if isinstance(node, _NOT_OVER_PROPERTIES):
            raise ConditionError(
                f"condition {text!r}: {node.sql()!r}: dates are not allowed over an event's "
                "properties; compare them with numbers, text, true/false or null"
            )
        if isinstance(node, (*_COMPARISONS, exp.Between)):
            sides = [node.this, *(v for k, v in node.args.items() if k != "this" and v)]
            if sum(1 for side in sides if side.find(exp.Column)) > 1:
                raise ConditionError(
                    f"condition {text!r}: {node.sql()!r} compares two properties; compare a "
                    "property with a literal"
                )
        if isinstance(node, exp.In):
            kinds = {_is_number(e) for e in node.expressions if not isinstance(e, exp.Null)}
            if len(kinds) > 1:
                raise ConditionError(
                    f"condition {text!r}: {node.sql()!r} mixes numbers and text in one list"
                )


def _try_over_properties(text: str, condition: Condition) -> None:
    """Run the compiled condition on DuckDB over sample properties (none; each a number; each
    text; each true): a type the checks above let through (`cart_value + 1 = 'x'`) fails here,
    at load, not in every later tick."""
    samples: list[dict[str, object]] = [{}]
    samples += [dict.fromkeys(condition.columns, v) for v in (1, "a", True)]
    con = duckdb.connect()
    try:
        con.execute("create table samples (p varchar)")
        con.executemany("insert into samples values (?)", [[json.dumps(p)] for p in samples])
        con.execute(f"select {condition.json_sql('p')} from samples").fetchall()  # noqa: S608
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise ConditionError(
            f"condition {text!r} cannot run over an event's properties: {first}"
        ) from None
    finally:
        con.close()


def _is_predicate(node: exp.Expr) -> bool:
    inner = node.unnest() if isinstance(node, exp.Paren) else node
    return isinstance(inner, _PREDICATES)


def _check_shape(text: str, node: exp.Expr) -> None:
    """`is` only with null/true/false, `in` only with a list of literals, `not`/`and`/`or` only
    over something true or false."""
    if isinstance(node, exp.In) and node.args.get("query") is not None:
        raise ConditionError(f"condition {text!r}: a subquery is not allowed")
    if isinstance(node, exp.Is) and not isinstance(node.expression, exp.Null | exp.Boolean):
        raise ConditionError(f"condition {text!r}: use `is null` or `is not null` only")
    if isinstance(node, exp.In) and (
        not node.expressions
        or any(node.args.get(k) for k in ("query", "field", "unnest"))
        or not all(isinstance(e, exp.Literal | exp.Neg | exp.Null) for e in node.expressions)
    ):
        raise ConditionError(f"condition {text!r}: `in` takes a list of literal values")
    if isinstance(node, exp.Not | exp.And | exp.Or) and not all(
        _is_predicate(child) for child in (node.this, node.args.get("expression")) if child
    ):
        raise ConditionError(
            f"condition {text!r}: {node.sql()!r} combines something that is not true or false"
        )


def _check_interval_texts(text: str, read_dialect: str) -> None:
    """sqlglot keeps only the number of `interval '30 days and more'`: refuse the rest here."""
    try:
        tokens = sqlglot.tokenize(text, read=read_dialect)
    except TokenError as exc:
        raise ConditionError(f"condition {text!r} does not parse: {exc}") from None
    for before, token in zip(tokens, tokens[1:], strict=False):
        if before.token_type == TokenType.INTERVAL and token.token_type == TokenType.STRING:
            words = token.text.split()
            if not _INTERVAL_TEXT.match(token.text) or (
                len(words) == 2 and words[1].upper().removesuffix("S") not in UNITS
            ):
                raise ConditionError(
                    f"condition {text!r}: interval {token.text!r} must be a number and a unit"
                )
