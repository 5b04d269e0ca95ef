"""Step analysis on edge-reported metrics: canary nodes against stable nodes, same window.

Each heartbeat carries window rates (``error_rate``, ``fallback_rate``, ``latency_p99_ms``) and
the number of requests in that window (``requests``). Rates are request-weighted; the p99 is the
request-weighted mean of the nodes' window p99s (a fleet-level p99 cannot be rebuilt from
per-node p99s; the weighted mean is the usual approximation and is documented as such).

With precision variants (issue 17: int8 on CPU nodes, fp16 on GPU nodes) a pooled p99 would
compare CPU latencies with GPU ones, so ``variant`` (version -> precision) makes the p99 check
like with like: each variant's canary p99 against the stable nodes running the same precision
(rates stay pooled: an error is an error on any hardware). Per-variant numbers are reported as
``<precision>.p99_ms`` / ``<precision>.requests``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cloud.fleet.schemas import NodeSample
from cloud.rollout.schemas import AnalysisConfig, AnalysisResult, Verdict


def summarize(samples: Iterable[NodeSample]) -> dict[str, float]:
    req = 0
    err = fb = p99w = 0.0
    for s in samples:
        if s.requests <= 0:
            continue
        req += s.requests
        err += s.error_rate * s.requests
        fb += s.fallback_rate * s.requests
        p99w += s.p99_ms * s.requests
    if req == 0:
        return {"requests": 0.0}
    return {"requests": float(req), "error_rate": err / req, "fallback_rate": fb / req, "p99_ms": p99w / req}


VariantOf = Callable[[str], str | None]


def _by_variant(samples: list[NodeSample], variant: VariantOf) -> dict[str, list[NodeSample]]:
    out: dict[str, list[NodeSample]] = {}
    for x in samples:
        out.setdefault(variant(x.version) or "?", []).append(x)
    return out


def _p99_by_variant(
    canary: list[NodeSample],
    stable: list[NodeSample],
    cfg: AnalysisConfig,
    variant: VariantOf,
    c: dict[str, float],
    s: dict[str, float],
) -> tuple[str, str]:
    """(failure reason or "", note): each variant's canary p99 against stable nodes of that variant."""
    notes = []
    stable_groups = _by_variant(stable, variant)
    for precision, group in sorted(_by_variant(canary, variant).items()):
        cs, ss = summarize(group), summarize(stable_groups.get(precision, []))
        c[f"{precision}.requests"] = cs["requests"]
        s[f"{precision}.requests"] = ss["requests"]
        if cs["requests"] < max(cfg.min_requests, 1) or ss["requests"] < max(cfg.min_requests, 1):
            notes.append(f"{precision}: p99 not compared (too little traffic)")
            continue
        c[f"{precision}.p99_ms"], s[f"{precision}.p99_ms"] = cs["p99_ms"], ss["p99_ms"]
        bound = ss["p99_ms"] * cfg.max_p99_ratio + cfg.p99_slack_ms
        if cs["p99_ms"] > bound:
            return (
                f"canary {precision} p99 {cs['p99_ms']:.1f} ms > {bound:.1f} ms "
                f"(stable {precision} p99 {ss['p99_ms']:.1f} ms)"
            ), ""
        notes.append(f"{precision} p99 {cs['p99_ms']:.1f} ms within {bound:.1f} ms")
    return "", "; ".join(notes)


def analyze(
    canary: Iterable[NodeSample],
    stable: Iterable[NodeSample],
    cfg: AnalysisConfig,
    variant: VariantOf | None = None,
) -> AnalysisResult:
    canary, stable = list(canary), list(stable)
    c, s = summarize(canary), summarize(stable)
    if not cfg.enabled:
        return AnalysisResult(verdict=Verdict.PASS, reason="analysis disabled", canary=c, stable=s)
    if c["requests"] < max(cfg.min_requests, 1):
        return AnalysisResult(
            verdict=Verdict.INCONCLUSIVE,
            reason=f"only {int(c['requests'])} canary requests (need {cfg.min_requests}); "
            "no verdict on no traffic",
            canary=c,
            stable=s,
        )
    if c["error_rate"] > cfg.max_error_rate:
        return AnalysisResult(
            verdict=Verdict.FAIL,
            reason=f"canary error rate {c['error_rate']:.3f} > {cfg.max_error_rate:.3f}",
            canary=c,
            stable=s,
        )
    if c["fallback_rate"] > cfg.max_fallback_rate:
        return AnalysisResult(
            verdict=Verdict.FAIL,
            reason=f"canary fallback rate {c['fallback_rate']:.3f} > {cfg.max_fallback_rate:.3f}",
            canary=c,
            stable=s,
        )
    if variant is not None:
        failure, p99_note = _p99_by_variant(canary, stable, cfg, variant, c, s)
        if failure:
            return AnalysisResult(verdict=Verdict.FAIL, reason=failure, canary=c, stable=s)
    elif s["requests"] >= max(cfg.min_requests, 1):
        bound = s["p99_ms"] * cfg.max_p99_ratio + cfg.p99_slack_ms
        if c["p99_ms"] > bound:
            return AnalysisResult(
                verdict=Verdict.FAIL,
                reason=f"canary p99 {c['p99_ms']:.1f} ms > {bound:.1f} ms (stable p99 {s['p99_ms']:.1f} ms)",
                canary=c,
                stable=s,
            )
        p99_note = f"p99 {c['p99_ms']:.1f} ms within {bound:.1f} ms"
    else:
        p99_note = "p99 not compared (stable nodes had too little traffic)"
    return AnalysisResult(
        verdict=Verdict.PASS,
        reason=f"{int(c['requests'])} requests, error rate {c['error_rate']:.3f}, "
        f"fallback rate {c['fallback_rate']:.3f}, {p99_note}",
        canary=c,
        stable=s,
    )
