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
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
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

    def claims(self, meant_for_route: bool) -> tuple[int, int]:
        """(routed to the new route, asked) among the demo questions meant for it, or the others."""
        picked = [
            g
            for (_, _, g), (_, m) in zip(self.answers, QUESTIONS, strict=True)
            if (m == ROUTE) is meant_for_route
        ]
        return sum(g == self.route for g in picked), len(picked)


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
    from cloud.training.new_route import OPERATOR_GATE, NewRouteConfig, train_new_route
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
        if json.loads(marker.read_text())["parent_sha256"] == parent_sha:
            read_checkpoint_meta(grown)
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
            "--method gate)"
        )
        t = time.perf_counter()
        cfg = NewRouteConfig(method="gate", gate=OPERATOR_GATE, seed=SUPPORT_SEED)
        train_new_route(checkpoint, ROUTE, support, grown, config=cfg)
        res.grow_s = time.perf_counter() - t
        t = time.perf_counter()
        opened = open_bundle(export_checkpoint(grown, bundle, precision="fp32", version="1.3.0"))
        res.export_s = time.perf_counter() - t
        marker.write_text(json.dumps({"parent_sha256": parent_sha}))
    else:
        console.print(f"reusing the gated route's bundle {bundle} (grown from the same checkpoint)")
    gate = read_checkpoint_meta(grown).training["new_route"]["gate"]
    res.gate = {k: gate[k] for k in ("kind", "feature", "threshold", "claim_rate")}
    res.bundle = str(bundle)

    questions = [q for q, _ in QUESTIONS]
    others = [e.text for e in default_splits(0)["test"][:OTHER_SAMPLE]]
    parent_routes, gated_routes = _routes_of(opened, questions + others)
    n = len(questions)
    res.answers = list(zip(questions, parent_routes[:n], gated_routes[:n], strict=True))
    res.other_n = len(others)
    res.other_changed = sum(a != b for a, b in zip(parent_routes[n:], gated_routes[n:], strict=True))

    tbl = Table(title=f"route {ROUTE} added as a gate: ONNX Runtime on the exported graph (fp32)")
    tbl.add_column("question")
    tbl.add_column("meant")
    tbl.add_column("parent's routing")
    tbl.add_column("with the gated route")
    for (q, p, g), (_, meant) in zip(res.answers, QUESTIONS, strict=True):
        tbl.add_row(q, meant, p, f"[bold]{g}[/]" if g == ROUTE else g)
    console.print(tbl)
    timing = "reused" if res.reused else f"grown in {res.grow_s:.1f}s, exported in {res.export_s:.1f}s"
    console.print(
        f"gate {res.gate['kind']} on {res.gate['feature']} ({timing}); of {res.other_n} generator test "
        f"questions of the other routes, {res.other_changed} changed route (the gate claims at most "
        f"{float(str(res.gate['claim_rate'])):.1%} of its calibration set); the parent weights are untouched"
    )
    return res
