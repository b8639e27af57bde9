"""Personal columns are marked in the dbt YAML (`meta: {pii: ...}`) and docs/pii.md lists them."""

from __future__ import annotations

import json

from orchestration.dbt_project import ensure_manifest
from switchyard.privacy.pii import BY_NAME, KINDS, markdown, personal_columns
from switchyard.settings import PROJECT_DIR


def test_every_documented_personal_column_is_marked_with_its_kind() -> None:
    manifest = json.loads(ensure_manifest().read_text())
    nodes = [*manifest["sources"].values(), *manifest["nodes"].values()]
    wrong = []
    for node in nodes:
        for name, spec in node.get("columns", {}).items():
            kind = (spec.get("meta") or {}).get("pii")
            expected = BY_NAME.get(name.lower())
            if kind not in (expected, *(KINDS if expected is None else ())):
                wrong.append(f"{node['name']}.{name}: pii {kind!r}, expected {expected!r}")
            if kind is not None and kind not in KINDS:
                wrong.append(f"{node['name']}.{name}: pii {kind!r} is none of {KINDS}")
    assert not wrong, "\n".join(wrong)


def test_docs_list_what_the_yaml_marks() -> None:
    written = (PROJECT_DIR / "docs" / "pii.md").read_text()
    assert written == markdown(personal_columns(ensure_manifest())), (
        "docs/pii.md is stale: run `switchyard pii > docs/pii.md`"
    )
    assert "| source ledger.deliveries | body | content | empty subject, body older than 30" in (
        written
    )
