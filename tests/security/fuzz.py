"""Schemathesis over a live server's OpenAPI description: every operation, positive and negative
cases, a fixed seed, a bounded number of examples. It records instead of raising (no shrinking:
every request counts toward the budget), so one run reports every problem at once.

Problems: any 5xx, a status the operation does not document, a non-JSON error body, a
connection error. ``AUTOGLM_FUZZ_EXAMPLES`` sets the examples per operation and generation mode
(the CI default, 25, keeps each app's run near a minute on the 2-core development machine);
``AUTOGLM_FUZZ_ROUNDS`` repeats the run with further seeds (a longer run:
``AUTOGLM_FUZZ_EXAMPLES=200 AUTOGLM_FUZZ_ROUNDS=4``)."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, openapi

DEFAULT_EXAMPLES = 25
SEED = 1414


def examples_per_operation(default: int = DEFAULT_EXAMPLES) -> int:
    return int(os.environ.get("AUTOGLM_FUZZ_EXAMPLES", default))


def rounds(default: int = 1) -> int:
    """``AUTOGLM_FUZZ_ROUNDS``: repeat the whole run with seeds SEED, SEED+1, … (operations with
    small input spaces run out of distinct examples; new seeds give new ones)."""
    return int(os.environ.get("AUTOGLM_FUZZ_ROUNDS", default))


@dataclass
class FuzzReport:
    requests: int = 0
    operations: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.requests} requests over {self.operations} operations in {self.seconds:.1f}s; "
            f"statuses {dict(sorted(self.statuses.items()))}; {len(self.problems)} problems"
        )


def _documented(raw: dict[str, Any]) -> tuple[set[int], set[int]]:
    """(exact statuses, class digits like 4 for '4XX'); 'default' documents everything."""
    exact: set[int] = set()
    classes: set[int] = set()
    for key in raw.get("responses", {}):
        key = str(key)
        if key == "default":
            classes |= {1, 2, 3, 4, 5}
        elif key.upper().endswith("XX"):
            classes.add(int(key[0]))
        else:
            exact.add(int(key))
    return exact, classes


def fuzz(
    schema_doc: dict[str, Any],
    base_url: str,
    headers: dict[str, str],
    *,
    examples: int,
    skip: frozenset[tuple[str, str]] = frozenset(),
    path_parameters: dict[str, dict[str, str]] | None = None,
    repeat: int | None = None,
) -> FuzzReport:
    """Run every operation of ``schema_doc`` against ``base_url``; returns what happened.
    ``path_parameters`` pins path parameters of some paths (e.g. the served model's name, so that
    the bodies reach the code behind the 404)."""
    schema = openapi.from_dict(schema_doc)
    report = FuzzReport()
    session = requests.Session()
    started = time.perf_counter()
    operations = [r.ok() for r in schema.get_all_operations()]
    for round_ in range(repeat if repeat is not None else rounds()):
        _fuzz_round(operations, round_, base_url, headers, examples, skip, path_parameters, session, report)
    report.operations //= max(1, repeat if repeat is not None else rounds())
    report.seconds = time.perf_counter() - started
    return report


def _fuzz_round(
    operations: list[Any],
    round_: int,
    base_url: str,
    headers: dict[str, str],
    examples: int,
    skip: frozenset[tuple[str, str]],
    path_parameters: dict[str, dict[str, str]] | None,
    session: requests.Session,
    report: FuzzReport,
) -> None:
    for op in operations:
        if (op.method.upper(), op.path) in skip:
            continue
        report.operations += 1
        exact, classes = _documented(op.definition.raw)
        pinned = (path_parameters or {}).get(op.path)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = _runner(
                op.as_strategy(generation_mode=mode, path_parameters=pinned),
                f"{op.method.upper()} {op.path} [{mode.value}]",
                exact,
                classes,
                examples,
                base_url,
                headers,
                session,
                report,
                SEED + round_,
            )
            try:
                run()
            except Unsatisfiable:  # e.g. no negative case exists for an operation without inputs
                continue


def _runner(
    strategy: Any,
    label: str,
    exact: set[int],
    classes: set[int],
    examples: int,
    base_url: str,
    headers: dict[str, str],
    session: requests.Session,
    report: FuzzReport,
    seed_value: int,
) -> Callable[[], None]:
    """The hypothesis test of one operation and generation mode (records, never raises)."""

    @seed(seed_value)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        try:
            response = case.call(base_url=base_url, headers=headers, session=session, timeout=60)
        except Exception as exc:  # a dropped connection, a hang: a problem of the server
            report.requests += 1
            report.problems.append(f"{label}: {type(exc).__name__}: {str(exc)[:200]}")
            return
        report.requests += 1
        status = response.status_code
        report.statuses[status] += 1
        if status >= 500:
            report.problems.append(
                f"{label}: {status} {response.text[:200]} <- {case.as_curl_command()[:300]}"
            )
        elif status not in exact and status // 100 not in classes:
            report.problems.append(f"{label}: undocumented status {status} {response.text[:160]}")
        elif status >= 400:
            ctype = response.headers.get("content-type", "")
            ctype = ctype[0] if isinstance(ctype, list) and ctype else str(ctype or "")
            try:
                shaped = ctype.startswith("application/json") and "error" in response.json()
            except ValueError:
                shaped = False
            if not shaped:
                report.problems.append(
                    f"{label}: {status} without the JSON error body: {response.text[:160]}"
                )

    return run  # type: ignore[no-any-return]
