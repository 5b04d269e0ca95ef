"""Demo stage · new route: an operator adds ``shift_schedule`` from 16 examples as a *gated* route
(what ``autoglm add-route CKPT shift_schedule --examples FILE --out DIR --method gate`` does), exports
it, and ONNX Runtime on the exported graph — as an edge node runs it — routes new phrasings of the
route to it while the other routes' routing stays the parent's except where the gate claims.

The export here is fp32 (seconds; ``autoglm export --precision int8`` takes about 100 s on two
cores and is what a fleet would get). The questions below were written before this stage first ran;
they are not the frozen evaluation set (docs/EVALUATION.md), on which ``bench_loop`` measures the
method (docs/arch/loop.md). The parent's routing is the same graph's argmax over the old routes'
outputs, which the gate leaves untouched (``cloud.model.route_gate.gated_logits``). Reused when the
gated bundle on disk was grown from the same parent checkpoint.

Then one learning-loop job runs on the gated model (``cloud.loop.finetune.finetune``, the demo's
short budget: 30 steps), which moves the adapters the gate reads, so the job fits the gate again
from its 16 examples plus the job's labelled ones (docs/arch/loop.md, "Gated routes in the loop");
the job's checkpoint is exported and routes the same questions.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from contracts.bundle import Bundle

ROUTE = "shift_schedule"
SUPPORT_SEED = 0
# (question, what the demo expects: the new route or "other") — hand-written, EN and ZH
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("who is on the night shift this weekend?", ROUTE),
    ("can I see next week's shift plan for line 2", ROUTE),
    ("I need to swap my Saturday shift with somebody", ROUTE),
    ("这周末谁值夜班？", ROUTE),
    ("what is 15% of 240?", "other"),
    ("convert 30 psi to bar", "other"),
)
OTHER_SAMPLE = 400  # generator test items whose routing is compared, parent vs gated graph
# the loop job on the gated model: two more labelled phrasings of the route (training data of the
# job, not questions it is judged on; written after the stage's first run left the Chinese question
# unclaimed, so its claim after the job demonstrates learning from labels, it is no evidence) and a
# few generator validation items of the other routes
JOB_LABELLED = ("print the rota for the packing crew next month", "谁来顶替周三的早班？")
JOB_OTHER = 8
JOB_STEPS = 30  # the demo's short budget (the shipped loop_train_steps is 120)


def _claims(routed: list[str], meant_for_route: bool) -> tuple[int, int]:
    """(routed to the new route, asked) among the demo questions meant for it, or the others."""
    picked = [r for r, (_, m) in zip(routed, QUESTIONS, strict=True) if (m == ROUTE) is meant_for_route]
    return sum(r == ROUTE for r in picked), len(picked)


@dataclass
class JobOnGate:
    """The loop job on the gated model: its labelled examples, the refitted gate's support, the
    routing of :data:`QUESTIONS` by the job's graph."""

    steps: int = JOB_STEPS
    labelled: int = 0  # the job's labelled examples of the gated route
    support_after: int = 0  # the refitted gate's support (stored examples + labelled)
    reused: bool = False
    wall_s: float = 0.0
    answers: list[str] = field(default_factory=list)  # routing of QUESTIONS after the job
    other_claimed: int = 0  # of the OTHER_SAMPLE other-route items, routed to the new route

    def claims(self, meant_for_route: bool) -> tuple[int, int]:
        return _claims(self.answers, meant_for_route)


@dataclass
class RouteResult:
    route: str = ROUTE
    support: int = 0
    grow_s: float = 0.0
    export_s: float = 0.0
    reused: bool = False
    gate: dict[str, object] = field(default_factory=dict)
    answers: list[tuple[str, str, str]] = field(default_factory=list)  # question, parent, gated
    other_n: int = 0
    other_changed: int = 0
    bundle: str = ""
    job: JobOnGate | None = None  # the loop job on the gated model

    def claims(self, meant_for_route: bool) -> tuple[int, int]:
        return _claims([g for _, _, g in self.answers], meant_for_route)


def _routes_of(opened: Bundle, texts: list[str]) -> tuple[list[str], list[str]]:
    """(the parent's routing: argmax over the old routes' outputs, the gated routing: argmax)."""
    import numpy as np

    from edge.runtime.bundle_session import BundleSession, bundle_tokenizer

    sess, tok = BundleSession(opened), bundle_tokenizer(opened)
    parent: list[str] = []
    gated: list[str] = []
    for i in range(0, len(texts), 64):
        ids, mask = tok(texts[i : i + 64])
        _, logits = sess.run(ids, mask)
        lg = np.asarray(logits)
        parent += [sess.routes[j] for j in lg[:, :-1].argmax(-1).tolist()]
        gated += [sess.routes[j] for j in lg.argmax(-1).tolist()]
    return parent, gated


def run_stage_route(console: Console, checkpoint: Path, root: Path) -> RouteResult:
    """Grow ``checkpoint`` by the gated route, export it, compare its routing with the parent's."""
    from cloud.data import default_splits
    from cloud.data.new_route import support_set
    from cloud.model.checkpoint import read_checkpoint_meta
    from cloud.model.route_gate import RouteGate
    from cloud.training.new_route import (
        NEW_ROUTE_KEY,
        OPERATOR_GATE,
        SUPPORT_TEXTS_KEY,
        NewRouteConfig,
        train_new_route,
    )
    from contracts.bundle import BundleError, open_bundle
    from export.pipeline import checkpoint_sha256, export_checkpoint

    res = RouteResult()
    work = root / "route-gate"
    grown, bundle, marker = work / "checkpoint", work / "bundle", work / "parent.json"
    parent_sha = checkpoint_sha256(checkpoint)
    support = [e.text for e in support_set(16, seed=SUPPORT_SEED)]
    res.support = len(support)
    opened: Bundle | None = None
    try:
        mark = json.loads(marker.read_text())
        same_parent = mark["parent_sha256"] == parent_sha and mark.get("gate") == asdict(OPERATOR_GATE)
        # a gated checkpoint grown before it kept its examples (2026-12-06) cannot have its gate
        # refitted by the loop job below: it is grown again
        if same_parent and read_checkpoint_meta(grown).training[NEW_ROUTE_KEY].get(SUPPORT_TEXTS_KEY):
            opened = open_bundle(bundle)  # verifies the files against the manifest (a damaged one is rebuilt)
    except (OSError, ValueError, KeyError, BundleError):
        opened = None
    res.reused = opened is not None
    if opened is None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "examples.txt").write_text("\n".join(support) + "\n", encoding="utf-8")
        console.print(
            f"an operator adds route [bold]{ROUTE}[/] from {len(support)} examples as a gate "
            f"(autoglm add-route {checkpoint} {ROUTE} --examples {work / 'examples.txt'} --out {grown} "
            "--method gate; the gate reads both embeddings and the word pieces)"
        )
        t = time.perf_counter()
        cfg = NewRouteConfig(method="gate", gate=OPERATOR_GATE, seed=SUPPORT_SEED)
        train_new_route(checkpoint, ROUTE, support, grown, config=cfg)
        res.grow_s = time.perf_counter() - t
        t = time.perf_counter()
        opened = open_bundle(export_checkpoint(grown, bundle, precision="fp32", version="1.3.0"))
        res.export_s = time.perf_counter() - t
        marker.write_text(json.dumps({"parent_sha256": parent_sha, "gate": asdict(OPERATOR_GATE)}))
    else:
        console.print(f"reusing the gated route's bundle {bundle} (grown from the same checkpoint)")
    gate = read_checkpoint_meta(grown).route_gate_doc() or {}
    res.gate = {k: gate[k] for k in ("kind", "feature", "threshold", "claim_rate")}
    res.gate["reads"] = RouteGate.from_dict(gate).inputs()
    res.bundle = str(bundle)

    questions = [q for q, _ in QUESTIONS]
    others = [e.text for e in default_splits(0)["test"][:OTHER_SAMPLE]]
    parent_routes, gated_routes = _routes_of(opened, questions + others)
    n = len(questions)
    res.answers = list(zip(questions, parent_routes[:n], gated_routes[:n], strict=True))
    res.other_n = len(others)
    res.other_changed = sum(a != b for a, b in zip(parent_routes[n:], gated_routes[n:], strict=True))

    res.job = _job_on_gate(grown, work, questions, others, reuse=res.reused)

    tbl = Table(title=f"route {ROUTE} added as a gate: ONNX Runtime on the exported graph (fp32)")
    tbl.add_column("question")
    tbl.add_column("meant")
    tbl.add_column("parent's routing")
    tbl.add_column("with the gated route")
    tbl.add_column("after a loop job (gate refitted)")
    for (q, p, g), (_, meant), j in zip(res.answers, QUESTIONS, res.job.answers, strict=True):
        tbl.add_row(q, meant, p, f"[bold]{g}[/]" if g == ROUTE else g, f"[bold]{j}[/]" if j == ROUTE else j)
    console.print(tbl)
    timing = "reused" if res.reused else f"grown in {res.grow_s:.1f}s, exported in {res.export_s:.1f}s"
    console.print(
        f"gate {res.gate['kind']} on {res.gate['reads']} ({timing}); of {res.other_n} generator test "
        f"questions of the other routes, {res.other_changed} changed route (the gate claims at most "
        f"{float(str(res.gate['claim_rate'])):.1%} of its calibration set); the parent weights are untouched"
    )
    job = res.job
    job_timing = "reused" if job.reused else f"{job.wall_s:.1f}s with the export"
    console.print(
        f"a loop job on the gated model ({job.steps} steps, the demo's budget; {job.labelled} more labelled "
        f"{ROUTE} questions + {JOB_OTHER} other-route examples; {job_timing}) moved the adapters the gate "
        f"reads, so it fitted the gate again from {job.support_after} examples; afterwards "
        f"{job.other_claimed} of the {res.other_n} other-route questions go to {ROUTE}"
    )
    return res


def _job_on_gate(
    grown: Path, work: Path, questions: list[str], others: list[str], *, reuse: bool
) -> JobOnGate:
    """One loop fine-tune of the gated checkpoint (its gate refitted), exported; the job's graph
    routes ``questions`` and counts the ``others`` it claims. Reused with the stage when its bundle
    verifies."""
    import random

    from cloud.data import default_splits
    from cloud.loop.finetune import finetune
    from cloud.loop.settings import LoopSettings
    from cloud.model.checkpoint import read_checkpoint_meta
    from cloud.training.new_route import NEW_ROUTE_KEY
    from contracts.bundle import BundleError, open_bundle
    from export.pipeline import export_checkpoint

    job = JobOnGate(labelled=len(JOB_LABELLED))
    ckpt, bundle = work / "job-checkpoint", work / "job-bundle"
    opened = None
    if reuse:
        try:
            read_checkpoint_meta(ckpt)
            opened = open_bundle(bundle)
        except (OSError, ValueError, KeyError, BundleError):
            opened = None
    job.reused = opened is not None
    if opened is None:
        shutil.rmtree(ckpt, ignore_errors=True)
        shutil.rmtree(bundle, ignore_errors=True)
        t = time.perf_counter()
        routes = set(read_checkpoint_meta(grown).adapter_sets["default"].routes) - {ROUTE}
        val = [e for e in default_splits(0)["val"] if e.route in routes]
        hard = [(q, ROUTE) for q in JOB_LABELLED]
        hard += [(e.text, e.route) for e in random.Random("demo-job-on-gate").sample(val, JOB_OTHER)]
        st = LoopSettings(loop_train_steps=JOB_STEPS, loop_base_samples=600, loop_eval_max=200)
        finetune(grown, hard, ckpt, st)
        opened = open_bundle(export_checkpoint(ckpt, bundle, precision="fp32", version="1.3.1"))
        job.wall_s = time.perf_counter() - t
    job.support_after = int(read_checkpoint_meta(ckpt).training[NEW_ROUTE_KEY]["support"])
    routed = _routes_of(opened, questions + others)[1]
    job.answers = routed[: len(questions)]
    job.other_claimed = sum(r == ROUTE for r in routed[len(questions) :])
    return job
