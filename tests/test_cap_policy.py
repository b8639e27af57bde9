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


def test_load_journeys_applies_the_policy_dbt_project_yml_declares(tmp_path: Path) -> None:
    manifest = ensure_manifest()
    plain = {j.name: j for j in load_journeys(manifest)}
    assert all(not j.cap_from_policy for j in plain.values())  # the project declares none
    declared = {"messages": 3, "per_hours": 6, "exempt_journeys": ["welcome"]}
    journeys = {j.name: j for j in load_journeys(manifest, project_with(tmp_path, declared))}
    for name, journey in journeys.items():
        before = plain[name]
        if name == "welcome":  # exempt: its own cap stays, its sends count toward none
            assert journey.cap_exempt and journey.frequency_cap == before.frequency_cap
            assert not journey.counted
        elif before.frequency_cap is None and not before.transactional:
            assert journey.frequency_cap == FrequencyCap(3, 6) and journey.cap_from_policy
        else:  # (the sample journeys declare caps of their own)
            assert journey == before
    bad = project_with(tmp_path / "bad", {"messages": 0})
    with pytest.raises(JourneyDefinitionError, match=r"vars\.frequency_cap: messages must be"):
        load_journeys(manifest, bad)
    worse = project_with(tmp_path / "worse", {"messages": 1, "on_cap": "drop"})
    with pytest.raises(JourneyDefinitionError, match="on_cap 'drop' is one of defer, skip, exit"):
        load_journeys(manifest, worse)


def test_caps_simulate_replays_the_projects_policy_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SWITCHYARD_LANDING_DIR", str(tmp_path / "landing"))
    # none declared: the command says what to do
    assert cli.main(["caps", "simulate"]) == 2
    assert "dbt_project.yml declares none" in capsys.readouterr().err
    project = project_with(tmp_path / "project", {"messages": 4, "per_hours": 8})
    monkeypatch.setattr(cli, "PROJECT_DIR", project)
    assert cli.main(["caps", "simulate", "--days", "1"]) == 0
    assert "cap 4 per 8 h" in capsys.readouterr().out
