"""`autoglm add-route CHECKPOINT ROUTE --examples FILE --out DIR`: grow a checkpoint by one route
learnt from a handful of examples (``cloud.training.new_route.train_new_route``), outside the loop.

``--method proto`` is what the learning loop does (the top adapter + head adapted from the support,
replaying the old routes); ``--method gate`` leaves every parent weight untouched and adds a
calibrated side scorer that the exported graph applies (docs/arch/model-training.md, "Gated
route"): the other routes' routing changes only where the gate claims a request. Export the result
with ``autoglm export`` (a full bundle: an adapter-only update cannot carry a gate).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from autoglm.cli.common import console, fail, usage
from contracts.routes import GateFeature

MAX_EXAMPLES_BYTES = 1 << 20  # checked before the file is read
MAX_EXAMPLE_CHARS = 1000


class RouteMethod(StrEnum):
    PROTO = "proto"  # the loop's: top adapter + head, prototype-initialised output
    GATE = "gate"  # parent untouched; an lr gate claims the route


def read_examples(path: Path) -> list[str]:
    """One example per line (blank lines skipped); a file too big, not UTF-8 or with an overlong
    line is a usage error naming it."""
    if not path.is_file():
        usage(f"--examples {path}: no such file")
    size = path.stat().st_size
    if size > MAX_EXAMPLES_BYTES:
        usage(f"--examples {path}: {size} bytes, at most {MAX_EXAMPLES_BYTES} (one example per line)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        usage(f"--examples {path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if len(line) > MAX_EXAMPLE_CHARS:
            usage(f"--examples {path}: line {n} has {len(line)} characters, at most {MAX_EXAMPLE_CHARS}")
        if line.strip():
            out.append(line.strip())
    if not out:
        usage(f"--examples {path}: no examples (one per line; give at least 1, better 8-16)")
    return out


def add_route(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint directory to grow (it is not changed).")],
    route: Annotated[str, typer.Argument(help="The new route's name (lowercase, digits, underscores).")],
    examples: Annotated[Path, typer.Option(help="Text file: one example request per line (UTF-8).")],
    out: Annotated[Path, typer.Option(help="Directory to write the grown checkpoint to (new or empty).")],
    method: Annotated[
        RouteMethod,
        typer.Option(
            help="proto: adapt the top adapter + head (the loop's method); gate: parent weights untouched, "
            "a calibrated gate claims the route (lower drop on the other routes, costs a second encoder "
            "pass with any --gate-feature but embedding)."
        ),
    ] = RouteMethod.PROTO,
    gate_feature: Annotated[
        GateFeature | None,
        typer.Option(
            help="--method gate: what the gate reads: the parent's embedding, the base encoder's, both "
            "(cat), or both and the base encoder's max-pooled token states (cat_max) or its word pieces' "
            "input embeddings (cat_pieces) (default: the operator's gate, cat)."
        ),
    ] = None,
    gate_confidence: Annotated[
        bool | None,
        typer.Option(
            "--gate-confidence/--no-gate-confidence",
            help="--method gate: the gate also reads the parent's largest old-route probability (claims "
            "more of the new intent's phrasings and more of the other routes' unfamiliar ones; default: "
            "the operator's gate, docs/arch/loop.md rounds 6-10).",
        ),
    ] = None,
    claim_rate: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=0.05,
            help="--method gate: the share of the calibration examples the gate may claim (default: the "
            "operator's gate, 0.001).",
        ),
    ] = None,
    gate_tokens: Annotated[
        bool | None,
        typer.Option(
            "--gate-tokens/--no-gate-tokens",
            help="--method gate: the gate also reads the request's word pieces (default: the operator's "
            "gate, docs/arch/loop.md round 8).",
        ),
    ] = None,
    replay_variants: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=4,
            help="--method gate: altered copies of every replay example the gate is also fitted and "
            "calibrated on (default: the operator's gate, 1).",
        ),
    ] = None,
    support_variants: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=4,
            help="--method gate: altered copies of every example the gate also takes as the route's "
            "(default: the operator's gate, 0).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the replay sample and the adaptation.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON document, not a summary.")] = False,
) -> None:
    """Grow CHECKPOINT by ROUTE, learnt from the examples; export the result with `autoglm export`."""
    if not (checkpoint / "checkpoint.yaml").is_file():
        usage(f"{checkpoint}: not a checkpoint directory (no checkpoint.yaml)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        usage(f"--out {out}: exists and is not an empty directory (nothing is overwritten)")
    gate_options = [
        f"--gate-feature {gate_feature.value}" if gate_feature is not None else "",
        ("--gate-confidence" if gate_confidence else "--no-gate-confidence")
        if gate_confidence is not None
        else "",
        f"--claim-rate {claim_rate}" if claim_rate is not None else "",
        ("--gate-tokens" if gate_tokens else "--no-gate-tokens") if gate_tokens is not None else "",
        f"--replay-variants {replay_variants}" if replay_variants is not None else "",
        f"--support-variants {support_variants}" if support_variants is not None else "",
    ]
    given = [o for o in gate_options if o]
    if given and method is not RouteMethod.GATE:
        usage(f"{given[0]} needs --method gate (--method {method.value} has no gate)")
    texts = read_examples(examples)

    from dataclasses import replace

    from cloud.model.checkpoint import CheckpointError
    from cloud.training.new_route import OPERATOR_GATE, NewRouteConfig, train_new_route
    from contracts.errors import AutoGLMError

    if method is RouteMethod.GATE:
        gate = replace(
            OPERATOR_GATE,
            feature=OPERATOR_GATE.feature if gate_feature is None else gate_feature.value,
            confidence=OPERATOR_GATE.confidence if gate_confidence is None else gate_confidence,
            claim_rate=OPERATOR_GATE.claim_rate if claim_rate is None else claim_rate,
            replay_variants=OPERATOR_GATE.replay_variants if replay_variants is None else replay_variants,
            tokens=OPERATOR_GATE.tokens if gate_tokens is None else gate_tokens,
            support_variants=OPERATOR_GATE.support_variants if support_variants is None else support_variants,
        )
        cfg = NewRouteConfig(method="gate", gate=gate, seed=seed)
    else:
        cfg = NewRouteConfig(seed=seed)
    try:
        res = train_new_route(checkpoint, route, texts, out, config=cfg)
    except AutoGLMError as exc:
        fail(exc.message, 2 if exc.status < 500 else 1)
    except CheckpointError as exc:
        fail(str(exc), 2)
    doc: dict[str, Any] = {
        "checkpoint": str(res.checkpoint_dir),
        "route": res.route,
        "routes": res.routes,
        "support": res.support,
        "method": method.value,
        "wall_s": round(res.wall_s, 2),
    }
    if res.gate is not None:
        keys = ("kind", "feature", "threshold", "claim_rate", "calibration_claimed", "calibration_size")
        doc["gate"] = {k: res.gate[k] for k in keys}
        doc["gate"]["confidence_weight"] = res.gate.get("confidence_weight", 0.0)
        doc["gate"]["word_pieces"] = len(res.gate.get("token_weights") or {})
    if as_json:
        print(json.dumps(doc))
        return
    console.print(
        f"route [bold]{res.route}[/] added ({method.value}) from {res.support} examples in "
        f"{res.wall_s:.1f}s; routes now {len(res.routes)}"
    )
    if res.gate is not None:
        from cloud.model.route_gate import RouteGate

        g, reads = doc["gate"], RouteGate.from_dict(res.gate).inputs()
        console.print(
            f"gate: {g['kind']} on {reads}, threshold {g['threshold']:.4f} (claims "
            f"{g['calibration_claimed']} of {g['calibration_size']} calibration examples, at most "
            f"{g['claim_rate']:.2%})"
        )
    console.print(
        f"checkpoint: [bold]{res.checkpoint_dir.resolve()}[/] · next: autoglm export {res.checkpoint_dir}"
    )


def register(app: typer.Typer) -> None:
    """Attach this side's commands to the root app."""
    app.command(
        "add-route",
        help="Grow a checkpoint by one route learnt from a handful of examples (proto, or a gate).",
    )(add_route)
