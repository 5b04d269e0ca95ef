"""The console's learning-loop pages: the hard-example queue and the training jobs.

Viewers read; admins approve a suggestion, relabel, reject, queue a job and cancel one, through
the same service methods as ``/api/v1/hard-examples`` and ``/api/v1/jobs``; every page takes its
caller from :mod:`cloud.ui.routes`' ``Viewer`` / ``Admin`` dependencies (sign-in, same-origin POST
form with the CSRF token, admin role) and raises ``PageError`` for its error page.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cloud.ui.routes import Admin, PageError, Viewer, _page, _redirect, _svc
from contracts.errors import AutoGLMError
from contracts.loop import HardExampleStatus, JobState

router = APIRouter(include_in_schema=False)
PAGE = 100


@router.get("/ui/hard-examples", response_model=None)
def hard_examples(request: Request, sess: Viewer, status: str = "new") -> Response:
    chosen = HardExampleStatus(status) if status in HardExampleStatus.__members__.values() else None
    listing = _svc(request).loop.queue.items(chosen, limit=PAGE)
    here = f"/ui/hard-examples?status={status}"
    return _page(
        request,
        sess,
        "hard_examples.html",
        "_hard_examples_live.html",
        listing=listing,
        current=status,
        statuses=[s.value for s in HardExampleStatus],
        datasets=_svc(request).loop.queue.datasets()[:5],
        here=here,
        nav="hard-examples",
    )


@router.post("/ui/hard-examples/{item_id}/{action}", response_model=None)
async def hard_example_act(request: Request, acting: Admin, item_id: int, action: str) -> Response:
    sess, form = acting
    if action not in ("label", "reject"):
        raise PageError(404, f"unknown action {action!r} (label, reject)")
    q = _svc(request).loop.queue
    reason = form.get("reason", "").strip()[:500]
    try:
        if action == "label":
            item = q.label(item_id, form.get("route", "").strip() or None, actor=sess.actor, reason=reason)
            sess.flash.append(("ok", f"hard example {item_id}: labelled {item.label}"))
        else:
            q.reject(item_id, actor=sess.actor, reason=reason or "rejected from the console")
            sess.flash.append(("ok", f"hard example {item_id}: rejected"))
    except AutoGLMError as exc:
        sess.flash.append(("error", f"hard example {item_id}: {exc.message}"))
    return _redirect(form.get("next", "/ui/hard-examples"))


@router.get("/ui/jobs", response_model=None)
def jobs(request: Request, sess: Viewer) -> Response:
    return _page(
        request,
        sess,
        "jobs.html",
        "_jobs_live.html",
        jobs=_svc(request).loop.jobs.all(limit=PAGE),
        model=_svc(request).loop.settings.loop_model,
        here="/ui/jobs",
        nav="jobs",
    )


@router.get("/ui/jobs/{job_id}", response_model=None)
def job_detail(request: Request, sess: Viewer, job_id: int) -> Response:
    try:
        job = _svc(request).loop.jobs.get(job_id)
    except AutoGLMError as exc:
        raise PageError.of(exc) from exc
    return _page(
        request,
        sess,
        "job.html",
        "_job_live.html",
        job=job,
        terminal=job.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED),
        here=f"/ui/jobs/{job_id}",
        nav="jobs",
    )


@router.post("/ui/jobs", response_model=None)
async def job_create(request: Request, acting: Admin) -> Response:
    sess, form = acting
    svc = _svc(request)
    model = form.get("model", "").strip() or svc.loop.settings.loop_model
    try:
        svc.registry.get_model(model)
        job, created = svc.loop.jobs.create(
            model, actor=sess.actor, reason=form.get("reason", "").strip()[:500]
        )
        sess.flash.append(("ok", f"job {job.id} {'queued' if created else 'was already queued'}"))
        return _redirect(f"/ui/jobs/{job.id}")
    except AutoGLMError as exc:
        sess.flash.append(("error", f"job not queued: {exc.message}"))
        return _redirect("/ui/jobs")


@router.post("/ui/jobs/{job_id}/cancel", response_model=None)
async def job_cancel(request: Request, acting: Admin, job_id: int) -> Response:
    sess, form = acting
    try:
        job = _svc(request).loop.jobs.cancel(
            job_id, actor=sess.actor, reason=form.get("reason", "").strip()[:500]
        )
        sess.flash.append(
            ("ok", f"job {job_id}: {'cancelled' if job.state is JobState.CANCELLED else 'cancel requested'}")
        )
    except AutoGLMError as exc:
        sess.flash.append(("error", f"job {job_id}: {exc.message}"))
    return _redirect(form.get("next", f"/ui/jobs/{job_id}"))
