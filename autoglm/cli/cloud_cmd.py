"""`autoglm cloud`: run the controller and manage the registry, fleet and rollouts over its API.

``serve`` starts the controller; every other command is an HTTP client of a running one
(``--url`` / ``AUTOGLM_CLOUD_API_URL``, token ``--token`` / ``AUTOGLM_CLOUD_ADMIN_TOKEN``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from autoglm.cli.common import console, fail

UrlOpt = Annotated[str | None, typer.Option("--url", help="Controller API base URL (default: settings api_url).")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="Admin bearer token (default: settings admin_token).")]


def _client(url: str | None, token: str | None) -> Any:
    import httpx

    from cloud.settings import CloudSettings

    settings = CloudSettings()
    tok = token or settings.admin_token or next(iter(sorted(settings.admin_tokens)), "")
    if "=" in tok and not token:  # a named entry (name=TOKEN) from the settings list
        tok = tok.split("=", 1)[1]
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    return httpx.Client(base_url=(url or settings.api_url).rstrip("/"), headers=headers, timeout=120)


def _call(url: str | None, token: str | None, method: str, path: str, **kw: Any) -> Any:
    import httpx

    try:
        with _client(url, token) as c:
            r = c.request(method, path, **kw)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the controller: {exc}")
    if r.status_code >= 400:
        try:
            msg = r.json().get("error") or r.json().get("detail") or r.text
        except ValueError:
            msg = r.text
        fail(f"{r.status_code}: {msg}")
    return r.json() if r.content else None


def _kv(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs:
        for part in p.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                fail(f"{part!r} must be key=value")
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _ts(value: str | None) -> str:
    return (value or "")[:19].replace("T", " ")


def _rollout_table(r: dict[str, Any]) -> None:
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
        console.print(f"last analysis: {r['last_analysis'].get('verdict')}: {r['last_analysis'].get('reason')}")
    if r.get("events"):
        t = Table("at", "from", "to", "step", "actor", "reason", title="transitions")
        for e in r["events"]:
            t.add_row(_ts(e["at"]), e["from_state"], e["to_state"], str(e["step_index"] + 1), e["actor"], e["reason"])
        console.print(t)


def register(app: typer.Typer) -> None:
    """Attach this side's commands to the root app."""
    cloud = typer.Typer(help="Cloud controller: serve, registry, fleet and rollouts.", no_args_is_help=True)
    app.add_typer(cloud, name="cloud")
    rollout = typer.Typer(help="Gray-release rollouts.", no_args_is_help=True)
    cloud.add_typer(rollout, name="rollout")

    @cloud.command("serve")
    def serve(
        host: Annotated[str | None, typer.Option(help="Bind address (default: settings http_host).")] = None,
        port: Annotated[int | None, typer.Option(help="Port (default: settings http_port).")] = None,
    ) -> None:
        """Run the controller (API, registry, fleet sync over MQTT, rollout loop)."""
        import uvicorn

        from cloud.api.app import create_app
        from cloud.settings import CloudSettings
        from contracts.logging import configure_logging

        settings = CloudSettings()
        configure_logging(settings.log_level)
        app = create_app(settings)
        uvicorn.run(app, host=host or settings.http_host, port=port or settings.http_port, log_level="warning")

    @cloud.command("models")
    def models(url: UrlOpt = None, token: TokenOpt = None) -> None:
        """List registered models."""
        rows = _call(url, token, "GET", "/api/v1/models")
        t = Table("model", "latest", "versions", "aliases", "created")
        for m in rows:
            aliases = ", ".join(f"{k}→{v}" for k, v in sorted(m["aliases"].items()))
            t.add_row(m["name"], m["latest_version"] or "-", str(m["version_count"]), aliases, _ts(m["created_at"]))
        console.print(t)

    @cloud.command("versions")
    def versions(model: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
        """List a model's versions (newest first)."""
        rows = _call(url, token, "GET", f"/api/v1/models/{model}/versions")
        t = Table("version", "status", "kind", "aliases", "parent", "created by", "created")
        for v in rows:
            t.add_row(v["version"], v["status"], v["kind"], ", ".join(v["aliases"]), v["parent"] or "-",
                      v["created_by"], _ts(v["created_at"]))
        console.print(t)

    @cloud.command("register")
    def register_bundle(
        path: Annotated[Path, typer.Argument(help="Bundle directory or archive to upload.")],
        tag: Annotated[list[str] | None, typer.Option("--tag", help="key=value (repeatable)")] = None,
        url: UrlOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Upload a bundle; the controller checks schema, hashes and signature before storing."""
        from contracts.bundle import pack_bundle

        params = {"tags": ",".join(f"{k}={v}" for k, v in _kv(tag or []).items())} if tag else {}
        with tempfile.TemporaryDirectory(prefix="autoglm-upload-") as tmp:
            archive = path if path.is_file() else pack_bundle(path, Path(tmp) / "bundle.tar")
            with archive.open("rb") as f:
                out = _call(url, token, "POST", "/api/v1/bundles", content=f.read(), params=params)
        console.print(f"registered {out['model']}@{out['version']} ({out['kind']}, {len(out['files'])} files)")

    @cloud.command("alias")
    def alias(
        model: str,
        name: str,
        version: str,
        reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit history).")],
        url: UrlOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Point an alias (stable, canary, ...) at a version."""
        ev = _call(url, token, "PUT", f"/api/v1/models/{model}/aliases/{name}", json={"version": version, "reason": reason})
        console.print(f"{model}:{name} {ev['from_version'] or '-'} → {ev['to_version']} by {ev['actor']}")

    @cloud.command("nodes")
    def nodes(
        selector: Annotated[str | None, typer.Option("--selector", "-l", help="site=a,group=b")] = None,
        online: Annotated[bool | None, typer.Option("--online/--offline", help="Only online / offline nodes.")] = None,
        url: UrlOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """List nodes with their versions, state and labels."""
        params: dict[str, Any] = {}
        if selector:
            params["selector"] = selector
        if online is not None:
            params["online"] = str(online).lower()
        rows = _call(url, token, "GET", "/api/v1/nodes", params=params)
        t = Table("node", "state", "current", "desired", "labels", "last seen", "last error")
        for n in rows:
            state = ("[green]online[/]" if n["online"] else "[red]offline[/]") + (" drained" if n["drained"] else "")
            labels = ",".join(f"{k}={v}" for k, v in sorted(n["labels"].items()))
            t.add_row(n["node_id"], state, n["current_version"] or "-", n["desired_version"] or "-", labels,
                      _ts(n["last_seen"]), n["last_error"][:40])
        console.print(t)
        console.print(f"{len(rows)} nodes, {sum(1 for n in rows if n['online'])} online")

    @cloud.command("label")
    def label(
        node_id: str,
        labels: Annotated[list[str], typer.Argument(help="key=value to set, or key- to remove")],
        url: UrlOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Set or remove labels of a node (site, group, gpu ...)."""
        remove = [x[:-1] for x in labels if x.endswith("-") and "=" not in x]
        set_ = _kv([x for x in labels if not (x.endswith("-") and "=" not in x)])
        n = _call(url, token, "PATCH", f"/api/v1/nodes/{node_id}/labels", json={"set": set_, "remove": remove})
        console.print(f"{n['node_id']}: " + ",".join(f"{k}={v}" for k, v in sorted(n["labels"].items())))

    @cloud.command("drain")
    def drain(
        node_id: str,
        undo: Annotated[bool, typer.Option("--undo", help="Take the node back into rollouts.")] = False,
        url: UrlOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Drain a node: rollouts leave it alone until --undo."""
        n = _call(url, token, "POST", f"/api/v1/nodes/{node_id}/drain", json={"drained": not undo})
        console.print(f"{n['node_id']}: {'drained' if n['drained'] else 'in service'}")

    @rollout.command("create")
    def rollout_create(
        model: str,
        version: str,
        selector: Annotated[str | None, typer.Option("--selector", "-l", help="site=a,group=b")] = None,
        steps: Annotated[str, typer.Option(help="Percent steps, comma separated.")] = "5,25,50,100",
        pause_s: Annotated[float, typer.Option("--pause-s", help="Bake time per step.")] = 60.0,
        min_requests: Annotated[int, typer.Option(help="Canary requests needed for a verdict.")] = 50,
        no_analysis: Annotated[bool, typer.Option("--no-analysis", help="Pass each step after the pause.")] = False,
        url: UrlOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Start a gray release of VERSION to the nodes matching the selector."""
        body = {
            "model": model, "version": version, "selector": _kv([selector] if selector else []),
            "steps": [float(s) for s in steps.split(",") if s.strip()], "pause_s": pause_s,
            "analysis": {"enabled": not no_analysis, "min_requests": min_requests},
        }
        _rollout_table(_call(url, token, "POST", "/api/v1/rollouts", json=body))

    @rollout.command("status")
    def rollout_status(
        rollout_id: Annotated[int | None, typer.Argument(help="Rollout id (omit: list rollouts).")] = None,
        url: UrlOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Show one rollout with its transitions, or list all."""
        if rollout_id is not None:
            _rollout_table(_call(url, token, "GET", f"/api/v1/rollouts/{rollout_id}"))
            return
        t = Table("id", "model", "version", "from", "state", "step", "targets", "updated")
        for r in _call(url, token, "GET", "/api/v1/rollouts"):
            t.add_row(str(r["id"]), r["model"], r["version"], r["stable_version"] or "-", r["state"],
                      f"{r['step_index'] + 1}/{len(r['steps'])}", str(len(r["targets"])), _ts(r["updated_at"]))
        console.print(t)

    def _action(name: str) -> None:
        @rollout.command(name, help=f"{name.capitalize()} a rollout.")
        def action(
            rollout_id: int,
            reason: Annotated[str, typer.Option("--reason", help="Kept with the transition.")] = "",
            url: UrlOpt = None,
            token: TokenOpt = None,
        ) -> None:
            _rollout_table(_call(url, token, "POST", f"/api/v1/rollouts/{rollout_id}/{name}", json={"reason": reason}))

    for _name in ("pause", "resume", "promote", "abort"):
        _action(_name)
