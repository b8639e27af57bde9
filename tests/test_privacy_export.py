"""`switchyard export-person`: everything held about one person, found through the identity
graph from any identifier they gave, and nothing about anyone else."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from activations import ledger
from activations.ledger.keys import SendRef
from switchyard import cli
from switchyard.privacy import export
from switchyard.privacy.subject import DEFAULT_PHONE_REGION, Request, SubjectError, resolve
from switchyard.settings import PROJECT_DIR, Paths
from tests.dbt_helpers import dbt_build
from tests.scenario import T0, Scenario

MODELS = (
    "+dim_people", "+fct_deliveries", "+fct_message_engagement", "+fct_journey_entries",
    "+dim_journey_positions", "+fct_inbox_messages", "+stg_preferences__suppressions",
    "int_identity_anchor_links",
)  # fmt: skip


@pytest.fixture(scope="module")
def built(module_paths: Paths) -> Paths:
    s = Scenario(module_paths.landing)
    ada_seen = T0 - timedelta(days=3)
    s.track("cart_updated", ada_seen, anonymous_id="dev-ada", sku="sku-red-scarf")
    s.person("ada", devices=("dev-ada",), email="Ada.Lovelace@Example.com ",
             phone="+14155550101", first_name="Ada", consent=("email",))  # fmt: skip
    s.opt_out("ada", "sms", T0 - timedelta(hours=5))
    s.orders.append({"order_id": "o-ada-1", "user_id": "ada", "email": "ada.lovelace@example.com",
                     "order_total": 42.5, "currency": "EUR", "order_status": "completed",
                     "ordered_at": T0.isoformat()})  # fmt: skip
    s.person("bob", devices=("dev-bob",), email="bob.builder@example.com", first_name="Bobby",
             consent=("email",))  # fmt: skip
    s.person("carl", email="family@example.com", first_name="Carl")
    s.person("dora", email="family@example.com", first_name="Dora")
    s.land()
    dbt_build(module_paths, *MODELS, command="run")
    # a message to Ada, as the sender records it, then the marts again
    with duckdb.connect(str(module_paths.duckdb), read_only=True) as con:
        (ada,) = con.execute("select person_id from dim_people where user_id = 'ada'").fetchone()
    writer = ledger.LedgerWriter(module_paths.landing, "r1")
    ref = SendRef("k-ada", "welcome", "tips", ada, "e-ada")
    writer.write(ref, "attempted", T0, channel="email", recipient="ada.lovelace@example.com",
                 subject="Tips for Ada", body="Hi Ada")  # fmt: skip
    writer.write(ref, "sent", T0, channel="email", recipient="ada.lovelace@example.com",
                 subject="Tips for Ada", body="Hi Ada", provider_message_id="sg-1")  # fmt: skip
    writer.close()
    dbt_build(module_paths, "+fct_deliveries", "+fct_message_engagement", command="run")
    return module_paths


def exported(paths: Paths, request: Request) -> dict[str, object]:
    with duckdb.connect(str(paths.duckdb), read_only=True) as con:
        return export.document(con, resolve(con, request), paths.duckdb)


def test_an_email_in_any_spelling_finds_the_person_and_all_they_left(built: Paths) -> None:
    doc = exported(built, Request("email", "  ADA.LOVELACE@example.COM"))
    profile = doc["profile"]
    assert isinstance(profile, dict) and profile["user_id"] == "ada"
    identifiers = {(i["type"], i["value"]): i["spellings"] for i in doc["identifiers"]}  # type: ignore[union-attr,index]
    assert identifiers[("email", "ada.lovelace@example.com")] == ["Ada.Lovelace@Example.com "]
    assert ("phone", "+14155550101") in identifiers and ("anonymous_id", "dev-ada") in identifiers
    # the cart she filled before logging in, stitched to her
    assert {e["event_name"] for e in doc["events"]} >= {"cart_updated"}  # type: ignore[union-attr,index]
    assert [o["order_id"] for o in doc["orders"]] == ["o-ada-1"]  # type: ignore[union-attr,index]
    history = [(c["channel"], c["consent_status"]) for c in doc["consent_history"]]  # type: ignore[union-attr,index]
    assert history == [("email", "subscribed"), ("sms", "unsubscribed")]
    (message,) = doc["messages"]  # type: ignore[misc]
    assert (message["subject"], message["delivery_status"]) == ("Tips for Ada", "sent")
    # nothing of anyone else
    text = json.dumps(doc, default=str).lower()
    for other in ("bob", "carl", "dora", "family@"):
        assert other not in text


def test_every_identifier_leads_to_the_same_document(built: Paths) -> None:
    by_email = exported(built, Request("email", "ada.lovelace@example.com"))
    by_phone = exported(built, Request("phone", "(415) 555-0101"))  # national, default region
    by_user = exported(built, Request("user_id", "ada"))
    by_person = exported(built, Request("person_id", str(by_email["person_id"])))

    def content(doc: dict[str, object]) -> dict[str, object]:
        return {k: v for k, v in doc.items() if k != "generated_at"}

    assert content(by_email) == content(by_phone) == content(by_user) == content(by_person)


def test_a_request_that_names_nobody_or_several_people_stops(built: Paths) -> None:
    with duckdb.connect(str(built.duckdb), read_only=True) as con:
        with pytest.raises(SubjectError, match="nobody with email"):
            resolve(con, Request("email", "nobody@example.com"))
        with pytest.raises(SubjectError, match="belongs to 2 people.*--person-id"):
            resolve(con, Request("email", "family@example.com"))
        with pytest.raises(SubjectError, match="not a phone number"):
            resolve(con, Request("phone", "call me maybe"))


def test_the_cli_writes_the_document_for_its_owner_only(
    built: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ada.json"
    assert cli.main(["export-person", "--user-id", "ada", "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    doc = json.loads(out.read_text())
    assert doc["profile"]["first_name"] == "Ada" and len(doc["orders"]) == 1
    assert "1 orders" in capsys.readouterr().out
    assert cli.main(["export-person", "--email", "nobody@example.com"]) == 1
    assert "nobody with email" in capsys.readouterr().err


def test_the_default_phone_region_is_the_identity_models() -> None:
    import yaml

    models = yaml.safe_load((PROJECT_DIR / "models/identity/_identity__models.yml").read_text())
    metas = [m.get("config", {}).get("meta", {}) for m in models["models"]]
    assert DEFAULT_PHONE_REGION in {m.get("default_phone_region") for m in metas}


def test_every_personal_column_the_warehouse_holds_is_marked_in_the_yaml(built: Paths) -> None:
    import json

    from orchestration.dbt_project import ensure_manifest
    from switchyard.privacy.pii import BY_NAME

    manifest = json.loads(ensure_manifest().read_text())
    marked = {
        (n["name"], c): (spec.get("meta") or {}).get("pii")
        for n in manifest["nodes"].values()
        if n["resource_type"] == "model"
        for c, spec in n["columns"].items()
    }
    with duckdb.connect(str(built.duckdb), read_only=True) as con:
        columns = con.execute(
            "select table_name, column_name from information_schema.columns "
            "where table_schema = 'main'"
        ).fetchall()
    unmarked = [f"{t}.{c}" for t, c in columns
                if c.lower() in BY_NAME and marked.get((t, c)) != BY_NAME[c.lower()]]  # fmt: skip
    assert len(columns) > 100 and not unmarked, unmarked
