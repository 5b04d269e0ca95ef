"""`autoglm cloud hard-examples ...`, `autoglm cloud jobs ...` and `autoglm cloud worker`: the
learning loop (docs/arch/loop.md). The first two are HTTP clients of a running controller (same
``--url`` / ``--token`` / ``--json`` conventions as the rest of ``autoglm cloud``); ``worker`` runs
the loop's worker process next to the API on the controller's database."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from autoglm.cli.cloud_cmd import JsonOpt, TokenOpt, UrlOpt, _call, _ts
from autoglm.cli.common import console, print_json

STATUSES = ("new", "labelled", "rejected")
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")


def _item_table(items: list[dict[str, Any]]) -> None:
    t = Table("id", "status", "count", "text", "suggested", "p", "source", "label", "nodes")
    for i in items:
        p = i["suggested_confidence"]
        t.add_row(
            str(i["id"]),
            i["status"],
            str(i["count"]),
            i["text"][:60],
            i["suggested_route"] or "-",
            "-" if p is None else f"{p:.2f}",
            i["suggestion_source"],
            i["label"] or "-",
            str(len(i["nodes"])),
        )
    console.print(t)


def _job_line(j: dict[str, Any], as_json: bool, *, logs: bool = False) -> None:
    if as_json:
        print_json(j)
        return
    t = Table(
        "id", "model", "state", "stage", "progress", "outcome", "parent", "version", "rollout", "created"
    )
    t.add_row(
        str(j["id"]),
        j["model"],
        j["state"],
        j["stage"],
        f"{100 * j['progress']:.0f}%",
        j["outcome"] or "-",
        j["parent_version"] or "-",
        j["version"] or "-",
        str(j["rollout_id"] or "-"),
        _ts(j["created_at"]),
    )
    console.print(t)
    if j.get("error"):
        console.print(f"error: {j['error']}", highlight=False)
    m = j.get("metrics") or {}
    if m.get("before"):
        console.print(
            f"hard set {m['before']['hard_accuracy']:.3f} → {m['after']['hard_accuracy']:.3f}, frozen set "
            f"{m['before']['frozen_accuracy']:.4f} → {m['after']['frozen_accuracy']:.4f}",
            highlight=False,
        )
    if logs:
        for line in j.get("logs") or []:
            console.print(f"  {line}", highlight=False)


def register_loop(cloud: typer.Typer) -> None:
    hard = typer.Typer(help="The hard-example queue: list, label, reject, datasets.", no_args_is_help=True)
    cloud.add_typer(hard, name="hard-examples")
    jobs = typer.Typer(help="Training jobs of the learning loop.", no_args_is_help=True)
    cloud.add_typer(jobs, name="jobs")

    @hard.command("list")
    def hard_list(
        status: Annotated[str | None, typer.Option(help=f"One of {', '.join(STATUSES)}.")] = None,
        limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Queue items, most seen first (with their suggested labels)."""
        if status is not None and status not in STATUSES:
            from autoglm.cli.common import usage

            usage(f"--status {status!r}: must be one of {', '.join(STATUSES)}")
        params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
        doc = _call(url, token, "GET", "/api/v1/hard-examples", params=params)
        if as_json:
            print_json(doc)
            return
        _item_table(doc["items"])
        console.print(f"{doc['total']} items; {doc['untriaged']} sightings not yet triaged", highlight=False)

    @hard.command("show")
    def hard_show(
        item_id: Annotated[int, typer.Argument(min=1)],
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """One queue item with its counts per node and route and its merged phrasings."""
        doc = _call(url, token, "GET", f"/api/v1/hard-examples/{item_id}")
        if as_json:
            print_json(doc)
            return
        _item_table([doc])
        console.print(
            f"nodes {doc['nodes']}  edge routes {doc['edge_routes']}  model {doc['model_route']} "
            f"cloud {doc['cloud_route']}",
            highlight=False,
        )
        for v in doc["variants"]:
            console.print(f"  ~ {v}", highlight=False)

    @hard.command("label")
    def hard_label(
        item_id: Annotated[int, typer.Argument(min=1)],
        route: Annotated[
            str | None, typer.Option("--route", help="The route (omit: approve the suggestion).")
        ] = None,
        reason: Annotated[str, typer.Option("--reason")] = "",
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Approve the suggested label, or relabel with --route."""
        body: dict[str, Any] = {"reason": reason, **({"route": route} if route else {})}
        doc = _call(url, token, "POST", f"/api/v1/hard-examples/{item_id}/label", json=body)
        print_json(doc) if as_json else _item_table([doc])

    @hard.command("reject")
    def hard_reject(
        item_id: Annotated[int, typer.Argument(min=1)],
        reason: Annotated[str, typer.Option()] = "",
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Keep an item out of training."""
        doc = _call(url, token, "POST", f"/api/v1/hard-examples/{item_id}/reject", json={"reason": reason})
        print_json(doc) if as_json else _item_table([doc])

    @hard.command("datasets")
    def hard_datasets(
        snapshot: Annotated[
            bool, typer.Option("--snapshot", help="Freeze the labelled examples now.")
        ] = False,
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """The labelled datasets (content-addressed); --snapshot makes one of the current labels."""
        if snapshot:
            _call(url, token, "POST", "/api/v1/hard-examples/datasets")
        rows = _call(url, token, "GET", "/api/v1/hard-examples/datasets")
        if as_json:
            print_json(rows)
            return
        t = Table("version", "sha256", "examples", "routes", "created")
        for d in rows:
            t.add_row(
                str(d["version"]),
                d["sha256"][:16],
                str(d["size"]),
                ", ".join(f"{k}:{v}" for k, v in sorted(d["routes"].items())),
                _ts(d["created_at"]),
            )
        console.print(t)

    @jobs.command("create")
    def job_create(
        model: Annotated[str, typer.Option(help="Model to improve.")] = "autoglm-router",
        reason: Annotated[str, typer.Option()] = "",
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Queue a job: train on the labelled hard examples, export, register, canary, promote/abort."""
        _job_line(_call(url, token, "POST", "/api/v1/jobs", json={"model": model, "reason": reason}), as_json)

    @jobs.command("status")
    def job_status(
        job_id: Annotated[int | None, typer.Argument(min=1, help="Job id (omit: list jobs).")] = None,
        state: Annotated[str | None, typer.Option(help=f"List only: one of {', '.join(JOB_STATES)}.")] = None,
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """One job with its log, or the list."""
        if job_id is not None:
            _job_line(_call(url, token, "GET", f"/api/v1/jobs/{job_id}"), as_json, logs=True)
            return
        if state is not None and state not in JOB_STATES:
            from autoglm.cli.common import usage

            usage(f"--state {state!r}: must be one of {', '.join(JOB_STATES)}")
        rows = _call(url, token, "GET", "/api/v1/jobs", params={"state": state} if state else {})
        if as_json:
            print_json(rows)
            return
        t = Table("id", "model", "state", "stage", "progress", "outcome", "version", "created")
        for j in rows:
            t.add_row(
                str(j["id"]),
                j["model"],
                j["state"],
                j["stage"],
                f"{100 * j['progress']:.0f}%",
                j["outcome"] or "-",
                j["version"] or "-",
                _ts(j["created_at"]),
            )
        console.print(t)

    @jobs.command("cancel")
    def job_cancel(
        job_id: Annotated[int, typer.Argument(min=1)],
        reason: Annotated[str, typer.Option()] = "",
        url: UrlOpt = None,
        token: TokenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Cancel a queued job, or stop a running one at its next step (an open canary is aborted)."""
        _job_line(
            _call(url, token, "POST", f"/api/v1/jobs/{job_id}/cancel", json={"reason": reason}), as_json
        )

    @cloud.command("worker")
    def worker(
        once: Annotated[
            bool, typer.Option("--once", help="Triage and run at most one job, then exit.")
        ] = False,
    ) -> None:
        """Run the learning loop's worker next to the API (same database): triage hard examples with
        the production model, run queued jobs one at a time."""
        import signal
        import threading

        from cloud.loop.settings import LoopSettings
        from cloud.settings import CloudSettings
        from contracts.logging import configure_logging, level_name

        settings = CloudSettings()
        LoopSettings()  # a bad loop setting is one line before the heavy imports
        configure_logging(level_name(settings.log_level, "AUTOGLM_CLOUD_LOG_LEVEL"))
        from autoglm.loop_export import guarded_update
        from cloud.loop.worker import LoopWorker, worker_services

        svc = worker_services(settings)
        stop = threading.Event()
        w = LoopWorker(svc, guarded_update, stop=stop)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        console.print(
            f"loop worker {w.id}  database {settings.resolved_database_url().split('@', 1)[-1]}",
            highlight=False,
        )
        try:
            if once:
                w.run_once()
            else:
                w.serve()
        except KeyboardInterrupt:
            stop.set()
        finally:
            svc.close()
