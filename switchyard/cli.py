"""`switchyard` command line: demo (the main job), sandbox, generate, prepare, journeys, syncs,
caps, ledger, inbox."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from switchyard import landing, preference_links, sample_data, summary
from switchyard.clock import parse_utc
from switchyard.settings import PROJECT_DIR, Paths

if TYPE_CHECKING:  # the journeys (and jsonschema) load only for the commands that use them
    from activations.journeys import Journey
    from intake.preference_center import Topic


def _has_events(paths: Paths) -> bool:
    folder = landing.table_dir(paths.landing, "segment", "events")
    return any(p.name != landing.PLACEHOLDER for p in folder.glob("*.jsonl"))


def cmd_demo(args: argparse.Namespace) -> int:
    from activations.channels.settings import (
        SANDBOX_URL_VARIABLE,
        ChannelSettingsError,
        channel_mode,
    )

    if channel_mode() != "sandbox":  # fails first, naming SWITCHYARD_CHANNELS, when unset
        raise ChannelSettingsError(
            "the demo sends to the local sandbox only (its sample people have real-looking phone "
            "numbers and addresses): set SWITCHYARD_CHANNELS=sandbox, as `make demo` does. Real "
            "sends run as Dagster jobs with SWITCHYARD_CHANNELS=providers."
        )
    paths = Paths.from_env()
    if args.reset and paths.home.exists():
        shutil.rmtree(paths.home)
    landing.ensure_layout(paths.landing)
    if not _has_events(paths):
        s = sample_data.generate(paths.landing, people=args.people, seed=args.seed)
        print(
            f"generated sample data: {s.people} people, {s.events} events, {s.orders} orders, "
            f"{s.consents} consent changes -> {paths.landing}"
        )
    else:
        print(f"using landing files already in {paths.landing} (--reset to start over)")

    from sandbox import Sandbox
    from switchyard.pipeline import run_pipeline

    # One sandbox for the whole run (every journey), so the summary can say what it received.
    sandbox = None
    if not os.environ.get(SANDBOX_URL_VARIABLE):
        sandbox = Sandbox(record_file=paths.home / "sandbox" / "received.jsonl").start()
        os.environ[SANDBOX_URL_VARIABLE] = sandbox.base_url
        print(f"channel sandbox listening on {sandbox.base_url}")
    try:
        run_pipeline(paths, now=args.now)
        run_sent = dict(Counter(r.channel for r in sandbox.received)) if sandbox else None
    finally:
        if sandbox:
            sandbox.stop()
            del os.environ[SANDBOX_URL_VARIABLE]
    print()
    print(summary.render(summary.collect(paths.duckdb), paths.duckdb, run_sent))
    if sandbox:
        print(f"\nWhat the sandbox received: {paths.home / 'sandbox' / 'received.jsonl'}")
    from activations.arrow_warehouse import configured_source
    from switchyard.report import ReportError, default_output, write_report

    try:
        written = write_report(configured_source(paths.duckdb), default_output(paths.home))
        print(f"Journey report (funnels, lift, channels): {written.path.resolve().as_uri()}")
    except ReportError as exc:
        print(f"No journey report: {exc}")
    return 0


def cmd_spark_connect(args: argparse.Namespace) -> int:
    from switchyard.spark import serve_command

    command = serve_command(args.port)
    print(
        f"Spark Connect on sc://127.0.0.1:{args.port}, with the spark output's warehouse and "
        f"metastore: set SWITCHYARD_TARGET=spark_connect (and SWITCHYARD_SPARK_REMOTE if the "
        "port is not 15002) for dbt, Dagster and the journeys. Ctrl-C to stop.",
        flush=True,
    )
    os.execv(command[0], command)  # the server is the process (a supervisor stops it)
    return 0  # not reached


def cmd_sandbox(args: argparse.Namespace) -> int:
    from sandbox import Sandbox

    record = (
        Path(args.record) if args.record else Paths.from_env().home / "sandbox" / "received.jsonl"
    )
    sb = Sandbox(host="127.0.0.1", port=args.port, record_file=record)
    print(
        f"sandbox on {sb.base_url}: SendGrid /v3/mail/send, Twilio Messages.json, FCM "
        f"messages:send; recording to {record}. Ctrl-C to stop.",
        flush=True,
    )
    print(
        "point Switchyard at it: export SWITCHYARD_CHANNELS=sandbox "
        f"SWITCHYARD_CHANNELS_BASE_URL={sb.base_url}",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        sb.serve_forever()
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    paths = Paths.from_env()
    s = sample_data.generate(paths.landing, people=args.people, seed=args.seed)
    print(
        f"{s.people} people, {s.events} events, {s.orders} orders, {s.consents} consents "
        f"-> {paths.landing}"
    )
    return 0


def cmd_journeys(args: argparse.Namespace) -> int:
    """Check every declared journey (validate), or print one as text (show NAME)."""
    from activations.journeys import JourneyDefinitionError, load_journeys
    from orchestration.dbt_project import ensure_manifest

    try:
        journeys = load_journeys(ensure_manifest())
    except JourneyDefinitionError as exc:
        print(f"invalid journey: {exc}", file=sys.stderr)
        return 1
    if args.action == "validate":
        for j in journeys:
            print(f"ok  {j.name} ({j.tier}, {len(j.steps)} steps, audience {j.audience_model})")
        return 0
    found = [j for j in journeys if j.name == args.name]
    if not found:
        names = ", ".join(j.name for j in journeys) or "none"
        print(f"no journey named {args.name!r}; declared: {names}", file=sys.stderr)
        return 1
    if args.action == "show":
        print(found[0].outline())
        return 0
    return _preview(found[0], args.now, frozenset(j.name for j in journeys if not j.counted))


def _preview(
    journey: Journey, now: datetime | None, uncounted: frozenset[str] = frozenset()
) -> int:
    """What the journey would do now: counts per step and decision, and every row in a file."""
    import json

    from activations.preview import preview_journey, write_preview_table
    from switchyard.clock import utc_now

    paths = Paths.from_env()
    result = preview_journey(
        journey,
        duckdb_path=paths.duckdb,
        landing_dir=paths.landing,
        now=now or utc_now(),
        uncounted_journeys=uncounted,
    )
    out = paths.home / "preview" / f"{journey.name}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, default=str) + "\n" for r in result.rows))
    steps = Counter(
        (r["node"], r["reason"], r.get("detail") or "-")
        for r in result.rows
        if r["kind"] == "transition"
    )
    sends = Counter(
        (r["step"], r["decision"], r.get("channel") or "-", r.get("reason") or "-")
        for r in result.rows
        if r["kind"] == "send"
    )
    summary = result.summary
    print(f"journey {journey.name} as of {result.as_of:%Y-%m-%d %H:%M} UTC (nothing recorded)")
    print(
        f"  would enter {summary.entered}, take {summary.transitions} steps, due now {summary.due}"
    )
    for (node, reason, detail), n in sorted(steps.items()):
        print(f"  step  {node:<20} {reason:<14} {detail[:40]:<40} {n}")
    for (step, decision, channel, reason), n in sorted(sends.items()):
        print(f"  send  {step:<20} {decision:<14} {channel:<6} {reason:<26} {n}")
    table = write_preview_table(result, paths.landing)
    print(f"every decision: {out}")
    print(f"  and in the warehouse: select * from fct_journey_previews where journey = "
          f"'{journey.name}'  ({table})")  # fmt: skip
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from activations.journeys import JourneyDefinitionError, load_journeys
    from orchestration.dbt_project import ensure_manifest

    manifest = ensure_manifest()
    print(f"dbt manifest: {manifest}")
    # the landing folders' typed placeholders, rewritten where an earlier version's lack a column
    landing.ensure_layout(Paths.from_env().landing)
    from activations.syncs import SyncDefinitionError, load_syncs

    try:
        print(f"journeys: {', '.join(j.name for j in load_journeys(manifest)) or 'none'}")
        print(f"syncs: {', '.join(s.name for s in load_syncs(manifest)) or 'none'}")
    except (JourneyDefinitionError, SyncDefinitionError) as exc:
        print(f"invalid declaration: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_syncs(args: argparse.Namespace) -> int:
    from activations.syncs import MassRemovalError, SyncLockedError, load_syncs, run_sync
    from activations.syncs.destination import DestinationAuthError
    from activations.syncs.settings import open_destination
    from orchestration.dbt_project import ensure_manifest

    syncs = {s.name: s for s in load_syncs(ensure_manifest())}
    if args.syncs_command == "list":
        for s in syncs.values():
            what = (
                f"membership in {s.membership}"
                if s.is_audience
                else (f"{len(s.attributes)} attributes")
            )
            print(f"{s.name}: {s.model} -> {s.destination} by {s.key}, {what}, tier {s.tier}")
        return 0
    chosen = list(syncs.values()) if args.all else [syncs[n] for n in args.names if n in syncs]
    unknown = sorted(set(args.names) - set(syncs))
    if unknown or not chosen:
        print(f"no sync named {unknown or args.names}; declared: {sorted(syncs)}", file=sys.stderr)
        return 2
    paths = Paths.from_env()
    landing.ensure_layout(paths.landing)
    for s in chosen:
        try:
            with open_destination(s.destination, paths.home / "sandbox") as destination:
                done = run_sync(s, paths.duckdb, paths.landing, destination, args.confirm_removals)
        except (MassRemovalError, DestinationAuthError, SyncLockedError) as exc:
            print(f"switchyard syncs run: {exc}", file=sys.stderr)
            return 1
        print(
            f"{s.name}: {done.added} added, {done.changed} changed, {done.removed} removed, "
            f"{done.unchanged} unchanged; {done.rows_sent} rows in {done.requests} requests, "
            f"{done.rejected} rejected, {done.gave_up} given up, {done.failed} failed, "
            f"{done.unknown} unknown, {done.held} held back; {done.duplicates} duplicated and "
            f"{done.null_keys} null keys not sent"
        )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from activations.arrow_warehouse import configured_source
    from switchyard.report import ReportError, default_output, write_report

    paths = Paths.from_env()
    output = Path(args.out) if args.out else default_output(paths.home)
    try:
        written = write_report(configured_source(paths.duckdb), output, journey=args.journey)
    except ReportError as exc:
        print(f"switchyard report: {exc}", file=sys.stderr)
        return 2
    print(
        f"journey report ({', '.join(written.journeys)}) from {written.source}: "
        f"{written.path.resolve().as_uri()}"
    )
    return 0


def cmd_export_person(args: argparse.Namespace) -> int:
    import duckdb

    from switchyard.privacy import export
    from switchyard.privacy.subject import SubjectError, resolve
    from switchyard.report import ReportError, sources

    paths = Paths.from_env()
    try:
        source = sources(paths.duckdb)[0]  # the published copy first: it is never locked
    except ReportError as exc:
        print(f"switchyard export-person: {exc}", file=sys.stderr)
        return 2
    con = duckdb.connect(str(source), read_only=True)
    try:
        subject = resolve(con, _privacy_request(args))
        doc = export.document(con, subject, source)
    except (SubjectError, export.ExportError) as exc:
        print(f"switchyard export-person: {exc}", file=sys.stderr)
        return 1
    finally:
        con.close()
    out = Path(args.out) if args.out else paths.home / "exports" / f"{subject.person_id}.json"
    export.write(doc, out)
    counts = ", ".join(
        f"{len(v)} {k.replace('_', ' ')}" for k, v in doc.items() if isinstance(v, list) and v
    )
    print(f"{subject.person_id}: {counts} (as of {doc['source_built_at']}) -> {out}")
    return 0


def _person_arguments(parser: argparse.ArgumentParser) -> argparse._MutuallyExclusiveGroup:
    """Who a privacy request is about: one identifier they gave, or their person id."""
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--email")
    who.add_argument("--phone", help="as the person gave it; read in the default region")
    who.add_argument("--user-id")
    who.add_argument("--person-id")
    return who


def _privacy_request(args: argparse.Namespace) -> Any:
    from switchyard.privacy.subject import KINDS, Request

    kind, value = next((k, v) for k in KINDS if (v := getattr(args, k)))
    return Request(kind, value)


def cmd_forget(args: argparse.Namespace) -> int:
    from activations.channels.settings import channel_mode
    from activations.syncs import sync_destinations
    from orchestration.dbt_project import ensure_manifest
    from switchyard.privacy.forget import forget
    from switchyard.privacy.subject import SubjectError

    paths = Paths.from_env()
    destinations = sync_destinations(ensure_manifest())
    if destinations:
        channel_mode(os.environ)  # how to reach them, said before anything is removed
    if args.from_file:
        from switchyard.privacy import requests

        try:
            queued, refused = requests.accept_file(
                paths.landing, Path(args.from_file), args.drop_new_events
            )
        except (SubjectError, OSError) as exc:
            print(f"switchyard forget: {exc}", file=sys.stderr)
            return 1
        for line in refused:
            print(f"switchyard forget: {args.from_file}, {line}", file=sys.stderr)
        print(f"{len(queued)} requests from {args.from_file} queued")
        outcome = _forget_queued(paths, destinations)
        return 1 if refused and outcome == 0 else outcome
    if args.queued:
        return _forget_queued(paths, destinations)
    try:
        done = forget(
            paths, _privacy_request(args), args.request_id, args.drop_new_events,
            destinations=destinations,
        )  # fmt: skip
    except (SubjectError, RuntimeError) as exc:
        print(f"switchyard forget: {exc}", file=sys.stderr)
        return 1
    for store, counts in sorted(done.stores.items()):
        if any(counts.values()):
            print(
                f"  {store}: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items())
            )
    if done.busy:
        print(
            f"request {done.request_id}: {len(done.busy)} parts unfinished (files still being "
            "written, deletions a platform did not answer): run `switchyard forget ... "
            f"--request-id {done.request_id}` again"
        )
        return 3
    who = done.person_id or "nobody in the warehouse under that identifier; it"
    print(f"request {done.request_id}: {who} forgotten (audit: {done.tombstone})")
    return 0


def _forget_queued(paths: Paths, destinations: list[str]) -> int:
    from switchyard.privacy import requests

    try:
        done = requests.process(paths, destinations)
    except RuntimeError as exc:
        print(f"switchyard forget: {exc}", file=sys.stderr)
        return 1
    for p in done:
        print(f"request {p.request_id}: {p.outcome}" + (f" ({p.reason})" if p.reason else ""))
    print(f"{len(done)} queued requests processed")
    return 3 if any(p.outcome != "completed" for p in done) else 0


def cmd_retention(args: argparse.Namespace) -> int:
    from orchestration.dbt_project import ensure_manifest
    from switchyard.clock import parse_utc
    from switchyard.privacy.retention import RetentionError, enforce, load_policy

    paths = Paths.from_env()
    try:
        policy = load_policy(ensure_manifest())
        now = parse_utc(args.now).replace(tzinfo=UTC) if args.now else None
        done = enforce(paths.landing, paths.duckdb, policy, now, dry_run=args.dry_run)
    except (RetentionError, RuntimeError, ValueError) as exc:
        print(f"switchyard retention: {exc}", file=sys.stderr)
        return 1
    verb = "would go" if done.dry_run else "went"
    for store, counts in sorted(done.stores.items()):
        rules = "; ".join(done.policy.get(store.split(":", 1)[1], []))
        print(
            f"  {store}: {counts['rows_removed']} rows removed, {counts['rows_redacted']} "
            f"redacted in {counts['files']} files ({rules})"
        )
    print(
        f"retention as of {done.now}: {done.rows_removed} rows removed and "
        f"{done.rows_redacted} redacted {verb}" + (f" (report: {done.path})" if done.path else "")
    )
    if done.busy:
        print(f"{len(done.busy)} files were being written: the next run takes them")
    return 0


def cmd_pii(args: argparse.Namespace) -> int:
    from orchestration.dbt_project import ensure_manifest
    from switchyard.privacy.pii import markdown, personal_columns

    print(markdown(personal_columns(ensure_manifest())), end="")
    return 0


def cmd_caps(args: argparse.Namespace) -> int:
    from activations import cap_policy, caps_simulate

    try:
        if args.policy:
            policy = cap_policy.CapPolicy.from_file(Path(args.policy))
        else:  # the project's own
            found = cap_policy.project_policy(PROJECT_DIR)
            if found is None:
                raise ValueError(
                    f"no --policy given, and dbt_project.yml declares none (vars: "
                    f"{cap_policy.PROJECT_VAR}:): name a policy file, JSON like "
                    f"{cap_policy.EXAMPLE}"
                )
            policy = found
    except ValueError as exc:
        print(f"switchyard caps simulate: {exc}", file=sys.stderr)
        return 2
    until = args.until or datetime.now(UTC).replace(tzinfo=None)
    paths = Paths.from_env()
    journeys = _declared_journeys()
    # The policy applies as at send time: not to transactional journeys (nor the ones it exempts
    # itself), nor to journeys with a cap of their own, whose messages count all the same.
    transactional = frozenset(j.name for j in journeys if j.transactional)
    own_caps = frozenset(j.name for j in journeys if j.frequency_cap and not j.cap_from_policy)
    zones = _time_zones(paths) if policy.calendar_day else {}
    results = caps_simulate.simulate(
        paths.landing, policy, until, args.days, exempt=transactional, timezones=zones,
        own_caps=own_caps,
    )  # fmt: skip
    exempt = sorted(policy.exempt_journeys | transactional)
    own = ", ".join(sorted(own_caps)) or "none"
    print(
        f"cap {policy.describe()} over the {args.days:g} days to {until:%Y-%m-%d %H:%M} UTC "
        f"(from the ledger; nothing sent; exempt: {', '.join(exempt) or 'none'}; "
        f"under caps of their own, counted but never held back: {own}):"
    )
    print(caps_simulate.as_table(results))
    return 0


def _declared_journeys() -> list[Journey]:
    """The project's journeys, or none if they cannot be read now (said on stderr)."""
    from activations.journeys import JourneyDefinitionError, load_journeys
    from orchestration.dbt_project import ensure_manifest

    try:
        return load_journeys(ensure_manifest())
    except (JourneyDefinitionError, OSError, RuntimeError) as exc:
        print(f"note: journeys not read, none exempt as transactional ({exc})", file=sys.stderr)
        return []


def _time_zones(paths: Paths) -> dict[str, str | None]:
    """Each person's time zone as dim_people has it (none before the first build)."""
    from activations import warehouse

    if not paths.duckdb.exists():
        print("note: no warehouse yet: everyone on the policy's default zone", file=sys.stderr)
        return {}
    with warehouse.attached(paths.duckdb) as con:
        return dict(con.execute("select person_id, timezone from dim_people").fetchall())


def cmd_ledger(args: argparse.Namespace) -> int:
    from activations.ledger.compact import compact

    done = compact(Paths.from_env().landing)
    if not done.generation:
        print(f"ledger: nothing to compact (deleted {done.deleted} run files taken earlier)")
    else:
        print(
            f"ledger: generation {done.generation}: {done.run_files} run files "
            f"({done.lines} lines) compacted, {done.keys} keys, "
            f"{done.deleted} run files taken earlier deleted"
        )
    return 0


def cmd_inbox(args: argparse.Namespace) -> int:
    from activations.inbox import service, tokens

    secret = os.environ.get(service.SECRET_VARIABLE, "")
    if not secret:
        print(
            f"switchyard inbox: set {service.SECRET_VARIABLE} (at least 32 bytes): the key the "
            "per-user tokens are signed with",
            file=sys.stderr,
        )
        return 2
    try:
        tokens.check_secret(secret)
    except ValueError as exc:
        print(f"switchyard inbox: {exc}", file=sys.stderr)
        return 2
    if args.action == "token":
        print(tokens.issue(secret, args.user_id, lifetime=args.lifetime))
        return 0
    import uvicorn

    origins = [o.strip() for o in os.environ.get(service.ORIGINS_VARIABLE, "").split(",")]
    app = service.create_app(
        Paths.from_env().landing, secret, allowed_origins=[o for o in origins if o]
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from intake.collector import PRIVACY_TOKEN_VARIABLE, CollectorSettings, create_app

    try:
        keys = CollectorSettings.parse_write_keys(os.environ.get("SWITCHYARD_WRITE_KEYS", ""))
    except ValueError as exc:
        print(f"switchyard collect: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    paths = Paths.from_env()
    landing.ensure_layout(paths.landing)
    env = os.environ.get
    app = create_app(
        CollectorSettings(
            paths.landing,
            keys,
            args.rotate_seconds,
            sendgrid_public_key=env("SWITCHYARD_SENDGRID_WEBHOOK_PUBLIC_KEY") or None,
            twilio_auth_token=env("SWITCHYARD_TWILIO_AUTH_TOKEN") or None,
            public_url=env("SWITCHYARD_COLLECTOR_PUBLIC_URL") or None,
            link_secret=preference_links.secret_from_env(),
            preference_topics=_preference_topics() if preference_links.secret_from_env() else (),
            privacy_token=env(PRIVACY_TOKEN_VARIABLE) or None,
        )
    )
    # One worker, one process: group commit needs every request of the process in one loop;
    # run several collectors (each its own files) behind a load balancer to scale out.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _preference_topics() -> tuple[Topic, ...]:
    """The topics the project's journeys declare, for the preference center's rows."""
    from activations.journeys import load_journeys
    from intake.preference_center import Topic
    from orchestration.dbt_project import ensure_manifest

    opt_in: dict[str, bool] = {}
    for journey in load_journeys(ensure_manifest()):
        if journey.topic:
            opt_in[journey.topic] = opt_in.get(journey.topic, False) or journey.topic_opt_in
    return tuple(Topic(name, opt_in[name]) for name in sorted(opt_in))


def cmd_consume(args: argparse.Namespace) -> int:
    from intake.kafka import consume

    config = {"bootstrap.servers": args.bootstrap_servers, "group.id": args.group}
    for setting in args.config or []:
        name, sep, value = setting.partition("=")
        if not sep:
            print(f"switchyard consume: --config {setting!r} is not name=value", file=sys.stderr)
            return 2
        config[name] = value
    paths = Paths.from_env()
    landing.ensure_layout(paths.landing)
    summary = consume(
        config, args.topic, paths.landing, source=args.source, max_batch=args.max_batch,
        flush_seconds=args.flush_seconds, idle_exit_seconds=args.exit_when_idle,
    )  # fmt: skip
    print(
        f"{summary.landed} events landed, {summary.rejected} rejected, in {summary.batches} "
        f"batches ({summary.commits} offset commits) -> {paths.landing}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchyard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate sample data (once) and run the whole pipeline")
    demo.add_argument("--people", type=int, default=10_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--reset", action="store_true", help="delete the home folder first")
    demo.add_argument(
        "--now",
        type=_utc_time,
        help="run as of this time (ISO 8601, any offset; none means UTC), not the clock",
    )
    demo.set_defaults(func=cmd_demo)

    sb = sub.add_parser("sandbox", help="run the local channel sandbox in the foreground")
    sb.add_argument("--port", type=int, default=8025)
    sb.add_argument("--record", help="JSON-lines file to record accepted messages to")
    sb.set_defaults(func=cmd_sandbox)

    spk = sub.add_parser(
        "spark-connect", help="serve the spark target's Spark to many processes (Spark Connect)"
    )
    spk.add_argument("--port", type=int, default=15002)
    spk.set_defaults(func=cmd_spark_connect)

    gen = sub.add_parser("generate", help="write sample landing files")
    gen.add_argument("--people", type=int, default=10_000)
    gen.add_argument("--seed", type=int, default=7)
    gen.set_defaults(func=cmd_generate)

    jrn = sub.add_parser("journeys", help="check the declared journeys, or show one as text")
    jrn_sub = jrn.add_subparsers(dest="action", required=True)
    jrn_sub.add_parser("validate", help="check every journey declaration (exit 1 if one is bad)")
    show = jrn_sub.add_parser("show", help="print one journey's entry, exits, cap and steps")
    show.add_argument("name")
    preview = jrn_sub.add_parser(
        "preview", help="what the journey would do now (who, which step, which channel, why)"
    )
    preview.add_argument("name")
    preview.add_argument("--now", type=_utc_time, help="as of this time (ISO 8601)")
    jrn.set_defaults(func=cmd_journeys)

    syncs = sub.add_parser("syncs", help="syncs to engagement platforms (Braze): list, run")
    syncs_sub = syncs.add_subparsers(dest="syncs_command", required=True)
    syncs_sub.add_parser("list", help="the syncs the dbt project declares (meta.syncs)")
    run_syncs = syncs_sub.add_parser("run", help="send what changed since the last run")
    run_syncs.add_argument("names", nargs="*", help="sync names (see `switchyard syncs list`)")
    run_syncs.add_argument("--all", action="store_true", help="every declared sync")
    run_syncs.add_argument(
        "--confirm-removals",
        action="store_true",
        help="go on when more than the sync's max_removal_share would be removed",
    )
    syncs.set_defaults(func=cmd_syncs)

    caps = sub.add_parser("caps", help="frequency caps: what a policy would have held back")
    caps_sub = caps.add_subparsers(dest="action", required=True)
    sim = caps_sub.add_parser(
        "simulate", help="replay the ledger's past sends under a cap policy (JSON file)"
    )
    sim.add_argument(
        "--policy",
        help='{"messages": 1, "per_hours": 24, ...} (default: dbt_project.yml vars.frequency_cap)',
    )
    sim.add_argument("--days", type=float, default=7, help="how far back (default 7)")
    sim.add_argument("--until", type=_utc_time, help="end of the window (default now)")
    caps.set_defaults(func=cmd_caps)

    led = sub.add_parser("ledger", help="the delivery ledger's upkeep")
    led_sub = led.add_subparsers(dest="action", required=True)
    led_sub.add_parser(
        "compact",
        help="move finished run files into Parquet and each key's state into one keys file "
        "(safe beside running runs; what a run reads stops growing with history)",
    )
    led.set_defaults(func=cmd_ledger)

    inbox = sub.add_parser("inbox", help="the in-app inbox: its HTTP endpoint, per-user tokens")
    inbox_sub = inbox.add_subparsers(dest="action", required=True)
    serve = inbox_sub.add_parser("serve", help="serve the inbox endpoint for apps")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8030)
    token = inbox_sub.add_parser("token", help="print a signed token for one user (testing)")
    token.add_argument("user_id")
    token.add_argument("--lifetime", type=int, default=3600, help="seconds (default 3600)")
    inbox.set_defaults(func=cmd_inbox)

    collect = sub.add_parser(
        "collect",
        help="the event collector: Segment's HTTP Tracking API (/v1/track, /v1/batch, ...) into "
        "the landing files (write keys: SWITCHYARD_WRITE_KEYS=source:key,...)",
    )
    collect.add_argument("--host", default="127.0.0.1")
    collect.add_argument("--port", type=int, default=8040)
    collect.add_argument(
        "--rotate-seconds",
        type=float,
        default=0.5,
        help="close the open landing file at least this often (default 0.5)",
    )
    collect.set_defaults(func=cmd_collect)

    consume_cmd = sub.add_parser("consume", help="events from a stream into the landing files")
    consume_sub = consume_cmd.add_subparsers(dest="action", required=True)
    kafka = consume_sub.add_parser(
        "kafka", help="Segment-shaped JSON events from a Kafka topic (at least once)"
    )
    kafka.add_argument("--topic", required=True)
    kafka.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    kafka.add_argument("--group", default="switchyard", help="consumer group (offsets)")
    kafka.add_argument("--source", help="the landed rows' source (default kafka:<topic>)")
    kafka.add_argument("--max-batch", type=int, default=5000, help="events a landing file")
    kafka.add_argument("--flush-seconds", type=float, default=1.0, help="a batch's longest wait")
    kafka.add_argument("--exit-when-idle", type=float, help="stop after this many idle seconds")
    kafka.add_argument(
        "--config", action="append", help="more librdkafka settings, name=value (repeatable)"
    )
    consume_cmd.set_defaults(func=cmd_consume)

    rep = sub.add_parser(
        "report", help="write the journey report: one HTML file with the funnels, lift, channels"
    )
    rep.add_argument("--journey", help="only this journey (default: every journey with entries)")
    rep.add_argument("--out", help="where to write it (default: <home>/reports/journeys.html)")
    rep.set_defaults(func=cmd_report)

    exp = sub.add_parser(
        "export-person",
        help="write everything held about one person as one JSON document (access requests)",
    )
    _person_arguments(exp)
    exp.add_argument("--out", help="where to write it (default: <home>/exports/<person_id>.json)")
    exp.set_defaults(func=cmd_export_person)

    fgt = sub.add_parser(
        "forget",
        help="forget a person: their rows removed from the landing files and the warehouse",
    )
    who = _person_arguments(fgt)
    who.add_argument(
        "--queued",
        action="store_true",
        help="forget every request the collector's /v1/privacy/forget queued",
    )
    who.add_argument(
        "--from-file",
        help="a CSV of requests (header: email, phone, user_id or person_id; request_id), "
        "forgotten in one pass with the queued ones",
    )
    fgt.add_argument("--request-id", help="the request's id (default: a new one); again to resume")
    fgt.add_argument(
        "--drop-new-events",
        action="store_true",
        help="suppress and delete: the person's new events are not landed by intake either",
    )
    fgt.set_defaults(func=cmd_forget)

    ret = sub.add_parser(
        "retention",
        help="remove or redact what is past the retention windows the dbt YAML declares",
    )
    ret.add_argument("--dry-run", action="store_true", help="count what would go, change nothing")
    ret.add_argument("--now", help="as if it were this time (ISO 8601; default: now)")
    ret.set_defaults(func=cmd_retention)

    pii = sub.add_parser(
        "pii", help="list the columns the dbt YAML marks personal, with their retention windows"
    )
    pii.set_defaults(func=cmd_pii)

    prep = sub.add_parser("prepare", help="build the dbt manifest (dbt parse) if stale")
    prep.set_defaults(func=cmd_prepare)

    args = parser.parse_args(argv)
    from activations.channels.settings import ChannelSettingsError

    try:
        return int(args.func(args))
    except ChannelSettingsError as exc:
        parser.exit(2, f"switchyard {args.command}: {exc}\n")


def _utc_time(text: str) -> datetime:
    try:
        return parse_utc(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main())
