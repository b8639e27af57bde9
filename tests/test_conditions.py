"""Journey conditions: what an analytics engineer may write, what is refused, and that the compiled
SQL selects the people the condition describes."""

from __future__ import annotations

import duckdb
import pytest

from activations.conditions import ConditionError, parse_condition

COLUMNS = {"churn_risk_score", "rfm_segment", "last_seen_at", "email_consent", "phone", "order"}
PEOPLE = [
    # name, churn_risk_score, rfm_segment, days since seen, email_consent, phone
    ("ada", 0.9, "champions", 40, "subscribed", "+14155550101"),
    ("bob", 0.8, "hibernating", 45, None, None),
    ("cy", 0.2, "loyal", 2, "unsubscribed", "+14155550103"),
    ("dee", 0.75, "loyal", 90, "subscribed", None),
]


def who(condition: str) -> list[str]:
    """Run the compiled condition on a small table of people (real DuckDB)."""
    compiled = parse_condition(condition, COLUMNS).sql("duckdb")
    con = duckdb.connect()
    con.execute(
        "create table people (name varchar, churn_risk_score double, rfm_segment varchar, "
        'last_seen_at date, email_consent varchar, phone varchar, "order" integer)'
    )
    for name, score, segment, days, consent, phone in PEOPLE:
        con.execute(
            "insert into people values (?, ?, ?, current_date - ?::integer, ?, ?, 1)",
            [name, score, segment, days, consent, phone],
        )
    rows = con.execute(f"select name from people where {compiled} order by name").fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize(
    "condition, people",
    [
        ("churn_risk_score >= 0.7 and rfm_segment in ('champions', 'loyal')", ["ada", "dee"]),
        ("coalesce(email_consent, 'none') = 'subscribed' and phone is not null", ["ada"]),
        ("last_seen_at < current_date - interval 30 day", ["ada", "bob", "dee"]),
        ("date_diff('day', last_seen_at, current_date) between 30 and 60", ["ada", "bob"]),
        ("not (churn_risk_score > 0.5) or rfm_segment = 'hibernating'", ["bob", "cy"]),
        ('"order" = 1 and email_consent is null', ["bob"]),  # a reserved word, quoted
        ("last_seen_at < current_date - interval '30 days'", ["ada", "bob", "dee"]),
    ],
)
def test_allowed_conditions_select_the_people_they_describe(
    condition: str, people: list[str]
) -> None:
    assert who(condition) == people


def test_conditions_compile_to_the_targets_dialect() -> None:
    condition = parse_condition("date_diff('day', last_seen_at, current_date) > 30", COLUMNS)
    assert condition.sql("duckdb") == "DATE_DIFF('DAY', \"last_seen_at\", CURRENT_DATE) > 30"
    assert condition.sql("spark") == "DATEDIFF(DAY, `last_seen_at`, CURRENT_DATE) > 30"
    assert condition.columns == {"last_seen_at"}


INJECTIONS = [
    ("1 = 1; drop table dim_people", "not several statements"),
    ("phone = ''; --", "not several statements"),
    ("phone in (select phone from dim_people)", "subquery"),
    ("exists (select 1)", "not allowed"),
    ("phone = (select max(phone) from dim_people)", "not allowed"),
    ("phone = 1 union select 1", "not allowed"),
    ("lower(phone) = 'x'", r"'LOWER\(phone\)' is not allowed"),
    ("read_csv('/etc/passwd') is not null", "not allowed"),
    ("phone = 1 /* hidden */", "comments"),
    ("phone = 1 -- and more", "comments"),
    ("dim_people.phone = '1'", "names a table"),
    ("password = 'x'", "unknown column 'password'"),
    ("*", "not allowed"),
    ("phone", "not a true/false expression"),
    ("churn_risk_score + 1", "not a true/false expression"),
    ("", "empty"),
    ("phone = ", "does not parse"),
    # Units and interval texts are checked, not passed through (Spark prints units as written).
    (
        "date_diff('day, last_seen_at, current_date) > 0 or exists(select 1 from s) or "
        "datediff(day', last_seen_at, current_date) > 1",
        "is not a time unit",
    ),
    ("date_diff('day; drop table dim_people; --', last_seen_at, current_date) > 1", "time unit"),
    ("last_seen_at < current_date - interval '1 day; drop table x'", "a number and a unit"),
    ("last_seen_at < current_date - interval '30 days and 1=1'", "a number and a unit"),
    # Shapes that are not a plain true/false test.
    ("phone is 'x'", "is null"),
    ("phone is phone", "is null"),
    ("phone in phone", "list of literal values"),
    ("phone in (email_consent)", "list of literal values"),
    ("not phone", "not true or false"),
    ("churn_risk_score > 1 and phone", "not true or false"),
]


@pytest.mark.parametrize("condition, why", INJECTIONS)
def test_anything_else_is_refused_with_the_offending_text(condition: str, why: str) -> None:
    with pytest.raises(ConditionError, match=why) as refused:
        parse_condition(condition, COLUMNS)
    if condition:
        assert repr(condition) in str(refused.value) or condition in str(refused.value)
