"""`autoglm cloud`: run the controller and manage the registry, fleet and rollouts over its API.

``serve`` starts the controller; every other command is an HTTP client of a running one
(``--url`` / ``AUTOGLM_CLOUD_API_URL``, token ``--token`` / ``AUTOGLM_CLOUD_ADMIN_TOKEN``). The
clients read only those settings, so a bad server-only setting does not break them. Every client
command takes ``--json`` (the API's documents); errors are one line, exit 2 for usage and 1 when
the controller refuses or cannot be reached.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from autoglm.cli.common import console, fail, print_json, usage

UrlOpt = Annotated[
    str | None, typer.Option("--url", help="Controller API base URL (default: settings api_url).")
]
TokenOpt = Annotated[
    str | None, typer.Option("--token", help="Admin bearer token (default: settings admin_token).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the controller's JSON instead of a table.")]
PortOpt = Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default: settings http_port).")]


def _client(url: str | None, token: str | None) -> Any:
    import httpx

    from cloud.settings import CloudSettings

    settings = CloudSettings.partial("api_url", "admin_token", "admin_tokens")
    tok = token or settings.admin_token or next(iter(sorted(settings.admin_tokens)), "")
    if ":" in tok and not token:  # a named entry (name:TOKEN) from the settings list
        tok = tok.split(":", 1)[1]
    base = (url or settings.api_url).rstrip("/")
    if not base.startswith(("http://", "https://")):
        usage(f"{'--url' if url else 'AUTOGLM_CLOUD_API_URL'}={base!r}: not an http(s) URL")
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    return httpx.Client(base_url=base, headers=headers, timeout=120)


def _call(url: str | None, token: str | None, method: str, path: str, **kw: Any) -> Any:
    import httpx

    try:
        with _client(url, token) as c:
            r = c.request(method, path, **kw)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the controller: {exc}")
    if r.status_code >= 400:
        try:
            doc = r.json()
            msg = (doc.get("error") or doc.get("detail") or r.text) if isinstance(doc, dict) else r.text
        except ValueError:
            msg = r.text
        fail(f"{r.status_code}: {msg}")
    return r.json() if r.content else None


def _kv(pairs: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs:
        for part in p.split(","):
            if not part.strip():
                continue
            if "=" not in part or not part.split("=", 1)[0].strip():
                usage(f"{flag} {part!r}: must be key=value")
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def parse_steps(text: str) -> list[float]:
    """``5,25,50,100`` -> percents; a one-line usage error naming ``--steps`` otherwise."""
    steps: list[float] = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            value = float(part)
        except ValueError:
            usage(f"--steps {text!r}: {part.strip()!r} is not a number (percent steps such as 5,25,50,100)")
        if not 0 < value <= 100:
            usage(f"--steps {text!r}: {value:g} is not a percent in (0, 100]")
        steps.append(value)
    if not steps:
        usage("--steps: give at least one percent step, e.g. 5,25,50,100")
    if steps != sorted(steps) or steps[-1] != 100:
        usage(f"--steps {text!r}: steps must increase and end at 100")
    return steps


def _ts(value: str | None) -> str:
    return (value or "")[:19].replace("T", " ")


def _rollout_table(r: dict[str, Any], as_json: bool = False) -> None:
    if as_json:
        print_json(r)
        return
    steps = " → ".join(
        f"[bold]{s:g}%[/]" if i == r["step_index"] else f"{s:g}%" for i, s in enumerate(r["steps"])
    )
    console.print(
        f"rollout #{r['id']}  {r['model']} {r.get('stable_version') or '-'} → {r['version']}  "
        f"state [bold]{r['state']}[/] ({r['phase']})  steps {steps}"
    )
    console.print(
        f"targets {len(r['targets'])}, running it {len(r['applied'])}, failed {len(r['failed_nodes'])}"
        + (f"  selector {r['selector']}" if r["selector"] else "")
    )
    if r.get("last_analysis"):
        console.print(
            f"last analysis: {r['last_analysis'].get('verdict')}: {r['last_analysis'].get('reason')}"
        )
    if r.get("events"):
        t = Table("at", "from", "to", "step", "actor", "reason", title="transitions")
        for e in r["events"]:
            t.add_row(
                _ts(e["at"]),
                e["from_state"],
                e["to_state"],
                str(e["step_index"] + 1),
                e["actor"],
                e["reason"],
            )
        console.print(t)


def _serve(host: str | None, port: int | None) -> None:
    from autoglm.cli.edge_cmd import display_url, require_free_port
    from cloud.settings import CloudSettings
    from cloud.sync.settings import CloudSyncSettings
    from contracts.logging import configure_logging, level_name

    overrides: dict[str, Any] = {k: v for k, v in (("http_host", host), ("http_port", port)) if v is not None}
    settings = CloudSettings(**overrides)  # settings first: a mistake is one line before the heavy imports
    if settings.mqtt_enabled:
        CloudSyncSettings()
    configure_logging(level_name(settings.log_level, "AUTOGLM_CLOUD_LOG_LEVEL"))
    require_free_port(settings.http_host, settings.http_port, "--port / AUTOGLM_CLOUD_HTTP_PORT")

    import uvicorn

    from cloud.api.app import create_app

    app = create_app(settings)
    broker = (
        f"mqtt://{settings.mqtt_host}:{settings.mqtt_port}"
        if settings.mqtt_enabled
        else "none (AUTOGLM_CLOUD_MQTT_ENABLED=false)"
    )
    db = settings.resolved_database_url()
    db_shown = db.split("@", 1)[-1] if "@" in db else db  # no credentials on screen
    console.print(
        f"listening on {display_url(settings.http_host, settings.http_port)}  broker {broker}  "
        f"database {db_shown}",
        highlight=False,
    )
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_level="warning")


def register(app: typer.Typer) -> None:
    """Attach this side's commands to the root app."""
    cloud = typer.Typer(help="Cloud controller: serve, registry, fleet and rollouts.", no_args_is_help=True)
    app.add_typer(cloud, name="cloud")
    rollout = typer.Typer(help="Gray-release rollouts.", no_args_is_help=True)
    cloud.add_typer(rollout, name="rollout")
    from autoglm.cli.loop_cmd import register_loop

    register_loop(cloud)  # hard-examples, jobs, worker (the learning loop)

    @cloud.command("serve")
    def serve(
        host: Annotated[str | None, typer.Option(help="Bind address (default: settings http_host).")] = None,
        port: PortOpt = None,
    ) -> None:
        """Run the controller (API, registry, fleet sync over MQTT, rollout loop); prints where it
        listens, the broker and the database."""
        _serve(host, port)

    @cloud.command("models")
    def models(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
        """List registered models."""
        rows = _call(url, token, "GET", "/api/v1/models")
        if as_json:
            print_json(rows)
            return
        t = Table("model", "latest", "versions", "aliases", "created")
        for m in rows:
            aliases = ", ".join(f"{k}→{v}" for k, v in sorted(m["aliases"].items()))
            t.add_row(
                m["name"], m["latest_version"] or "-", str(m["version_count"]), aliases, _ts(m["created_at"])
            )
        console.print(t)

    @cloud.command("versions")
    def versions(model: str, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
        """List a model's versions (newest first)."""
        rows = _call(url, token, "GET", f"/api/v1/models/{model}/versions")
        if as_json:
            print_json(rows)
            return
        t = Table("version", "status", "kind", "aliases", "parent", "created by", "created")
        for v in rows:
            t.add_row(
                v["version"],
                v["status"],
                v["kind"],
                ", ".join(v["aliases"]),
                v["parent"] or "-",
                v["created_by"],
                _ts(v["created_at"]),
            )
        console.print(t)

    @cloud.command("register")
    def register_bundle(
        path: Annotated[Path, typer.Argument(help="Bundle directory or archive to upload.")],
        tag: Annotated[list[str] | None, typer.Option("--tag", help="key=value (repeatable)")] = None,
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Upload a bundle; the controller checks schema, hashes and signature before storing."""
        from contracts.bundle import pack_bundle
        from contracts.errors import BundleError

        if not path.exists():
            usage(f"{path}: no such bundle directory or archive")
        params = {"tags": ",".join(f"{k}={v}" for k, v in _kv(tag or [], "--tag").items())} if tag else {}
        with tempfile.TemporaryDirectory(prefix="autoglm-upload-") as tmp:
            try:
                archive = path if path.is_file() else pack_bundle(path, Path(tmp) / "bundle.tar")
            except BundleError as exc:
                usage(f"{path}: {exc.message}")
            with archive.open("rb") as f:
                out = _call(url, token, "POST", "/api/v1/bundles", content=f.read(), params=params)
        if as_json:
            print_json(out)
            return
        console.print(
            f"registered {out['model']}@{out['version']} ({out['kind']}, {len(out['files'])} files)"
        )

    @cloud.command("alias")
    def alias(
        model: str,
        name: str,
        version: str,
        reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit history).")],
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Point an alias (stable, canary, ...) at a version."""
        ev = _call(
            url,
            token,
            "PUT",
            f"/api/v1/models/{model}/aliases/{name}",
            json={"version": version, "reason": reason},
        )
        if as_json:
            print_json(ev)
            return
        console.print(f"{model}:{name} {ev['from_version'] or '-'} → {ev['to_version']} by {ev['actor']}")

    @cloud.command("alias-delete")
    def alias_delete(
        model: str,
        name: str,
        reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit history).")],
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Remove an alias from a model (the versions stay)."""
        ev = _call(url, token, "DELETE", f"/api/v1/models/{model}/aliases/{name}", params={"reason": reason})
        if as_json:
            print_json(ev)
            return
        console.print(f"{model}:{name} {ev.get('from_version') or '-'} → (deleted) by {ev.get('actor')}")

    @cloud.command("version-archive")
    def version_archive(
        model: str,
        version: str,
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Mark a version archived (kept for lineage and rollback, no longer offered)."""
        v = _call(
            url, token, "PATCH", f"/api/v1/models/{model}/versions/{version}", json={"status": "archived"}
        )
        if as_json:
            print_json(v)
            return
        console.print(f"{model}@{v['version']}: {v['status']}")

    @cloud.command("nodes")
    def nodes(
        selector: Annotated[str | None, typer.Option("--selector", "-l", help="site=a,group=b")] = None,
        online: Annotated[
            bool | None, typer.Option("--online/--offline", help="Only online / offline nodes.")
        ] = None,
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List nodes with their versions, state and labels."""
        params: dict[str, Any] = {}
        if selector:
            _kv([selector], "--selector")
            params["selector"] = selector
        if online is not None:
            params["online"] = str(online).lower()
        rows = _call(url, token, "GET", "/api/v1/nodes", params=params)
        if as_json:
            print_json(rows)
            return
        t = Table(
            "node", "state", "current", "desired", "variant", "providers", "labels", "last seen", "last error"
        )
        for n in rows:
            state = ("[green]online[/]" if n["online"] else "[red]offline[/]") + (
                " drained" if n["drained"] else ""
            )
            labels = ",".join(f"{k}={v}" for k, v in sorted(n["labels"].items()))
            m = n.get("metrics") or {}
            providers = (
                ",".join(str(p).removesuffix("ExecutionProvider") for p in m.get("providers") or []) or "-"
            )
            t.add_row(
                n["node_id"],
                state,
                n["current_version"] or "-",
                n["desired_version"] or "-",
                str(m.get("variant") or "-"),
                providers,
                labels,
                _ts(n["last_seen"]),
                n["last_error"][:40],
            )
        console.print(t)
        console.print(f"{len(rows)} nodes, {sum(1 for n in rows if n['online'])} online")

    @cloud.command("label")
    def label(
        node_id: str,
        labels: Annotated[list[str], typer.Argument(help="key=value to set, or key- to remove")],
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Set or remove labels of a node (site, group, gpu ...)."""
        remove = [x[:-1] for x in labels if x.endswith("-") and "=" not in x]
        set_ = _kv([x for x in labels if not (x.endswith("-") and "=" not in x)], "LABELS")
        n = _call(
            url, token, "PATCH", f"/api/v1/nodes/{node_id}/labels", json={"set": set_, "remove": remove}
        )
        if as_json:
            print_json(n)
            return
        console.print(f"{n['node_id']}: " + ",".join(f"{k}={v}" for k, v in sorted(n["labels"].items())))

    @cloud.command("drain")
    def drain(
        node_id: str,
        undo: Annotated[bool, typer.Option("--undo", help="Take the node back into rollouts.")] = False,
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Drain a node: rollouts leave it alone until --undo."""
        n = _call(url, token, "POST", f"/api/v1/nodes/{node_id}/drain", json={"drained": not undo})
        if as_json:
            print_json(n)
            return
        console.print(f"{n['node_id']}: {'drained' if n['drained'] else 'in service'}")

    @cloud.command("enrol")
    def enrol(
        node_id: str,
        ttl_hours: Annotated[
            float, typer.Option("--ttl-hours", min=0.01, max=720, help="Lifetime of the token.")
        ] = 24,
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Create a one-time enrolment token that (re-)registers NODE_ID once (shown once)."""
        e = _call(url, token, "POST", f"/api/v1/nodes/{node_id}/enrolment", json={"ttl_s": ttl_hours * 3600})
        if as_json:
            print_json(e)
            return
        console.print(
            f"{e['node_id']}: one-time enrolment token (expires {_ts(e['expires_at'])} UTC)\n{e['token']}\n"
            "give it to the node as AUTOGLM_EDGE_CONTROL_BOOTSTRAP_TOKEN",
            highlight=False,
        )

    @cloud.command("node-delete")
    def node_delete(
        node_id: str,
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Forget a node (its token stops working; it must register again)."""
        _call(url, token, "DELETE", f"/api/v1/nodes/{node_id}")
        if as_json:
            print_json({"node_id": node_id, "deleted": True})
            return
        console.print(f"{node_id}: deleted")

    @rollout.command("create")
    def rollout_create(
        model: str,
        version: str,
        selector: Annotated[str | None, typer.Option("--selector", "-l", help="site=a,group=b")] = None,
        steps: Annotated[
            str, typer.Option(help="Percent steps, comma separated, ending at 100.")
        ] = "5,25,50,100",
        pause_s: Annotated[float, typer.Option("--pause-s", min=0, help="Bake time per step.")] = 60.0,
        min_requests: Annotated[int, typer.Option(min=0, help="Canary requests needed for a verdict.")] = 50,
        no_analysis: Annotated[
            bool, typer.Option("--no-analysis", help="Pass each step after the pause.")
        ] = False,
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Start a gray release of VERSION to the nodes matching the selector."""
        body = {
            "model": model,
            "version": version,
            "selector": _kv([selector] if selector else [], "--selector"),
            "steps": parse_steps(steps),
            "pause_s": pause_s,
            "analysis": {"enabled": not no_analysis, "min_requests": min_requests},
        }
        _rollout_table(_call(url, token, "POST", "/api/v1/rollouts", json=body), as_json)

    @rollout.command("status")
    def rollout_status(
        rollout_id: Annotated[
            int | None, typer.Argument(min=1, help="Rollout id (omit: list rollouts).")
        ] = None,
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Show one rollout with its transitions, or list all."""
        if rollout_id is not None:
            _rollout_table(_call(url, token, "GET", f"/api/v1/rollouts/{rollout_id}"), as_json)
            return
        rows = _call(url, token, "GET", "/api/v1/rollouts")
        if as_json:
            print_json(rows)
            return
        t = Table("id", "model", "version", "from", "state", "step", "targets", "updated")
        for r in rows:
            t.add_row(
                str(r["id"]),
                r["model"],
                r["version"],
                r["stable_version"] or "-",
                r["state"],
                f"{r['step_index'] + 1}/{len(r['steps'])}",
                str(len(r["targets"])),
                _ts(r["updated_at"]),
            )
        console.print(t)

    actions = {
        "pause": "Pause a rollout: no further steps until resume (the nodes keep what they run).",
        "resume": "Resume a paused rollout (a fresh bake window for the current step).",
        "abort": "Abort a rollout: canary nodes go back to the stable version.",
    }

    def _action(name: str, help_text: str) -> None:
        @rollout.command(name, help=help_text)
        def action(
            rollout_id: Annotated[int, typer.Argument(min=1)],
            reason: Annotated[str, typer.Option("--reason", help="Kept with the transition.")] = "",
            url: UrlOpt = None,
            token: TokenOpt = None,
            as_json: JsonOpt = False,
        ) -> None:
            out = _call(url, token, "POST", f"/api/v1/rollouts/{rollout_id}/{name}", json={"reason": reason})
            _rollout_table(out, as_json)

    for _name, _help in actions.items():
        _action(_name, _help)

    @rollout.command("promote")
    def rollout_promote(
        rollout_id: Annotated[int, typer.Argument(min=1)],
        full: Annotated[
            bool, typer.Option("--full", help="Skip every remaining step and its analysis.")
        ] = False,
        reason: Annotated[str, typer.Option("--reason", help="Kept with the transition.")] = "",
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Advance to the next step now: the current step's bake ends, its analysis runs on what was
        collected (a failure still aborts), then the next step starts. --full skips all remaining
        steps and analysis and sends the version to every matching node (Argo Rollouts' semantics)."""
        out = _call(
            url,
            token,
            "POST",
            f"/api/v1/rollouts/{rollout_id}/promote",
            json={"reason": reason},
            params={"full": "true"} if full else {},
        )
        _rollout_table(out, as_json)
