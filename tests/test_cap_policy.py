"""The project's frequency cap policy (activations/cap_policy.py): declared once in
dbt_project.yml, it caps every marketing journey without a cap of its own, at send time, in
the guard checks dbt builds, and in `switchyard caps simulate`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from activations import cap_policy
from activations.cap_policy import CapPolicy
from activations.journeys import FrequencyCap, JourneyDefinitionError, load_journeys
from orchestration.dbt_project import ensure_manifest
from switchyard import cli
from switchyard.settings import PROJECT_DIR
from tests.test_delivery import JOURNEY, UNCAPPED


def project_with(tmp_path: Path, policy: object) -> Path:
    """A copy of the project's dbt_project.yml declaring `policy` (vars.frequency_cap)."""
    project = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text())
    project["vars"]["frequency_cap"] = policy
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "dbt_project.yml").write_text(yaml.safe_dump(project))
    return tmp_path


def test_the_policy_caps_each_marketing_journey_that_declares_no_cap() -> None:
    policy = CapPolicy(2, 12, frozenset({"exempted"}), on_cap="skip")
    receipts = replace(UNCAPPED, name="receipts", message_type="transactional")
    exempted = replace(UNCAPPED, name="exempted")
    capped, own, receipt, exempt = cap_policy.apply([UNCAPPED, JOURNEY, receipts, exempted], policy)
    assert capped.frequency_cap == FrequencyCap(2, 12, on_cap="skip") and capped.cap_from_policy
    assert capped.counted and "the project's cap policy" in capped.outline()
    assert own.frequency_cap == JOURNEY.frequency_cap and not own.cap_from_policy  # its own
    assert receipt.frequency_cap is None and not receipt.counted
    assert exempt.frequency_cap is None and not exempt.counted and exempt.cap_exempt
    assert cap_policy.apply([UNCAPPED], None) == [UNCAPPED]
    with pytest.raises(ValueError, match=r"exempts journeys that are not declared: \['exempted'\]"):
        cap_policy.apply([UNCAPPED], policy)
    # exempt, a journey's own sends would stop counting toward its own cap: refused
    with pytest.raises(ValueError, match=r"declare a frequency_cap of their own: \['exempted'\]"):
        cap_policy.apply([replace(JOURNEY, name="exempted")], policy)


def test_load_journeys_applies_the_policy_dbt_project_yml_declares(tmp_path: Path) -> None:
    manifest = ensure_manifest()
    # The sample project: one message a day for cart and lapsed, welcome under its own cap.
    shipped = {j.name: j for j in load_journeys(manifest)}
    for name in ("cart_abandonment", "lapsed_reengagement"):
        assert shipped[name].frequency_cap == FrequencyCap(1, 24) and shipped[name].cap_from_policy
    assert not shipped["welcome"].cap_from_policy and shipped["welcome"].frequency_cap
    declared = {"messages": 3, "per_hours": 6, "on_cap": "skip",
                "exempt_journeys": ["cart_abandonment"]}  # fmt: skip
    journeys = {j.name: j for j in load_journeys(manifest, project_with(tmp_path, declared))}
    cart, lapsed = journeys["cart_abandonment"], journeys["lapsed_reengagement"]
    assert cart.frequency_cap is None and cart.cap_exempt and not cart.counted
    assert lapsed.frequency_cap == FrequencyCap(3, 6, on_cap="skip") and lapsed.counted
    assert journeys["welcome"] == shipped["welcome"]  # its own cap
    # none declared: each journey as it declares
    bare = {j.name: j for j in load_journeys(manifest, project_with(tmp_path / "none", None))}
    assert bare["cart_abandonment"].frequency_cap is None
    bad = project_with(tmp_path / "bad", {"messages": 0})
    with pytest.raises(JourneyDefinitionError, match=r"vars\.frequency_cap: messages must be"):
        load_journeys(manifest, bad)
    worse = project_with(tmp_path / "worse", {"messages": 1, "on_cap": "drop"})
    with pytest.raises(JourneyDefinitionError, match="on_cap 'drop' is one of defer, skip, exit"):
        load_journeys(manifest, worse)
    own = project_with(tmp_path / "own", {"messages": 1, "exempt_journeys": ["welcome"]})
    with pytest.raises(JourneyDefinitionError, match=r"dbt_project.yml \(vars.frequency_cap\)"):
        load_journeys(manifest, own)


def test_caps_simulate_replays_the_projects_policy_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SWITCHYARD_LANDING_DIR", str(tmp_path / "landing"))
    # none declared: the command says what to do
    monkeypatch.setattr(cli, "PROJECT_DIR", project_with(tmp_path / "none", None))
    assert cli.main(["caps", "simulate"]) == 2
    assert "dbt_project.yml declares none" in capsys.readouterr().err
    project = project_with(tmp_path / "project", {"messages": 4, "per_hours": 8})
    monkeypatch.setattr(cli, "PROJECT_DIR", project)
    assert cli.main(["caps", "simulate", "--days", "1"]) == 0
    out = capsys.readouterr().out
    assert "cap 4 per 8 h" in out
    assert "under caps of their own, counted but never held back: welcome" in out
