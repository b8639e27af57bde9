"""Message content from templates: Jinja2's sandboxed environment, strict about missing values.

A value is written `{first_name}`, with filters as in Jinja (`{cart_total | money('EUR')}`,
`{quantity} {quantity | plural('item')}`, `{ordered_at | date('%d %b')}`), and logic between
`[% %]` (`[% if vip %]...[% endif %]`), comments between `[# #]`. (dbt renders `{{ }}` and
`{% %}` inside its YAML, where journeys are declared, so the templates use delimiters it leaves
alone.)

A value that is missing or empty takes the step's declared fallback; with none, the message is
not sent: rendering raises MissingTemplateVariable and the step is skipped with the variable's
name, never sent with an empty greeting. The sandbox stops templates from reaching Python
internals (attributes starting with `_`, unsafe callables).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import jinja2.runtime
import jinja2.sandbox
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

if TYPE_CHECKING:
    from activations.graph import Template

CURRENCIES = {"USD": ("$", 2), "EUR": ("€", 2), "GBP": ("£", 2), "JPY": ("¥", 0)}
MAX_DIGITS = 15  # a number a filter formats
# What one template may do: loops of at most this many items, strings or lists repeated to at
# most this length, and at most this much output. (Templates come from the team's journeys, not
# from the people they go to: these stop a slip from taking the run down, not an attacker.)
MAX_RANGE = 1000
MAX_REPEAT = 1_000
MAX_OUTPUT_CHARS = 100_000


class MissingTemplateVariable(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class TemplateProblem(ValueError):
    """A template that does not parse (the message says where), or that fails for this message:
    a filter given what it cannot take, a reach into what the sandbox forbids."""


@dataclass(frozen=True)
class Rendered:
    body: str
    subject: str | None
    title: str | None


def _number(value: Any, what: str) -> Decimal:
    """A value as a Decimal of sane size: event properties are untrusted, and '9e999999999'
    formatted in full would take gigabytes."""
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"{what}: {value!r} is not a number") from exc
    if not number.is_finite() or abs(number.adjusted()) > MAX_DIGITS:
        raise ValueError(f"{what}: {value!r} is out of range")
    return number


def money(value: Any, currency: str = "USD") -> str:
    """12.5 -> '$12.50' (the currency's symbol and decimals; an unknown one after the amount)."""
    amount = _number(value, "money")
    symbol, places = CURRENCIES.get(currency.upper(), ("", 2))
    text = f"{amount:,.{places}f}"
    if amount < 0:
        text = text[1:]
        return f"-{symbol}{text}" if symbol else f"-{text} {currency.upper()}"
    return f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"


def plural(count: Any, singular: str, plural_form: str | None = None) -> str:
    """1 -> singular; anything else -> plural (singular + 's' unless given)."""
    return singular if _number(count, "plural") == 1 else (plural_form or f"{singular}s")


def _date_filter(context: Any, value: Any, format: str = "%d %b %Y") -> str:
    """A time in the person's time zone (the template's `timezone`, else UTC): an ISO string
    or a datetime, naive ones taken as UTC; a date as it is."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        try:
            zone = ZoneInfo(str(context.get("timezone") or "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        return aware.astimezone(zone).strftime(format)
    if isinstance(value, date):
        return value.strftime(format)
    raise ValueError(f"date: {value!r} is not a date or time")


def _bounded_range(*args: int) -> range:
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise jinja2.sandbox.SecurityError(f"range of {len(items)} items (at most {MAX_RANGE})")
    return items


class _Bounded(SandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**", "%"])

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                repeated = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if repeated and len(seq) * times > MAX_REPEAT:
                    raise jinja2.sandbox.SecurityError("a repetition that long")
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_DIGITS:
            raise jinja2.sandbox.SecurityError("a power that large")
        if operator == "%" and isinstance(left, str):  # printf widths can be gigabytes
            raise jinja2.sandbox.SecurityError("'%' formatting (use the filters)")
        return super().call_binop(context, operator, left, right)


def _environment() -> SandboxedEnvironment:
    env = _Bounded(
        variable_start_string="{",
        variable_end_string="}",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.globals["range"] = _bounded_range
    for unbounded in ("center", "indent", "format", "wordwrap"):  # widths without a limit
        env.filters.pop(unbounded, None)
    env.filters["money"] = money
    env.filters["plural"] = plural
    env.filters["date"] = jinja2.pass_context(_date_filter)
    return env


ENVIRONMENT = _environment()


@functools.lru_cache(maxsize=1024)
def _compiled(text: str) -> tuple[jinja2.Template, frozenset[str]]:
    try:
        parsed = ENVIRONMENT.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"line {exc.lineno}: {exc.message}") from exc
    names = frozenset(meta.find_undeclared_variables(parsed))
    return ENVIRONMENT.from_string(parsed), names


def check(text: str) -> None:
    """Raises TemplateProblem when `text` does not parse (journeys are checked at load)."""
    _compiled(text)


def fill(
    text: str, values: Mapping[str, object], fallbacks: Mapping[str, str], timezone: str | None
) -> str:
    template, names = _compiled(text)
    context: dict[str, object] = {"timezone": timezone}
    for name in sorted(names):
        value = values.get(name)
        if value is None or value == "":
            if name not in fallbacks:
                raise MissingTemplateVariable(name)
            value = fallbacks[name]
        context[name] = value
    out: list[str] = []
    size = 0
    try:
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateProblem(f"the message is longer than {MAX_OUTPUT_CHARS} characters")
            out.append(chunk)
    except jinja2.UndefinedError as exc:  # an attribute or key the value does not have
        raise MissingTemplateVariable(str(exc.message)) from exc
    except TemplateProblem:
        raise
    except (
        jinja2.TemplateError, ValueError, TypeError, ArithmeticError, MemoryError, RecursionError
    ) as exc:  # fmt: skip
        raise TemplateProblem(f"{type(exc).__name__}: {exc}") from exc
    return "".join(out)


def render(
    template: Template,
    values: Mapping[str, object],
    fallbacks: Mapping[str, str],
    timezone: str | None = None,
) -> Rendered:
    return Rendered(
        body=fill(template.body, values, fallbacks, timezone),
        subject=fill(template.subject, values, fallbacks, timezone) if template.subject else None,
        title=fill(template.title, values, fallbacks, timezone) if template.title else None,
    )


def render_properties(
    properties: Mapping[str, str],
    values: Mapping[str, object],
    fallbacks: Mapping[str, str],
    timezone: str | None = None,
) -> Rendered:
    """A hand-off's properties (name -> template), filled: the body is their JSON object, what
    the platform receives and the ledger keeps."""
    filled = {name: fill(text, values, fallbacks, timezone) for name, text in properties.items()}
    return Rendered(body=json.dumps(filled, sort_keys=True), subject=None, title=None)
