"""A small Dockerfile reader and the image rules the project holds its Dockerfiles to.

There is no Docker engine on the development machines, so the images are not built here; these
checks (plus hadolint where installed) cover the properties that matter: multi-stage, non-root,
pinned bases and packages, a health check on the real endpoint, no PyTorch in edge images.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

TORCH_LIKE = ("torch", "transformers", "torchvision", "torchaudio")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]


def parse(text: str) -> list[Stage]:
    """Stages of a Dockerfile: (instruction, argument) pairs with continuations joined."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    if buf:
        logical.append(buf)
    stages: list[Stage] = []
    for line in logical:
        op, _, arg = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", arg.strip(), re.I)
            assert m, f"bad FROM {arg!r}"
            stages.append(Stage(base=m.group(1), name=m.group(2)))
        elif stages:
            stages[-1].instructions.append((op, arg.strip()))
    return stages


def pip_installs(stage: Stage) -> list[list[str]]:
    """The argument lists of every ``pip install`` in the stage's RUN instructions."""
    found = []
    for run in stage.all("RUN"):
        commands: list[list[str]] = [[]]
        for word in shlex.split(run):
            if word in {"&&", ";", "||"}:
                commands.append([])
            else:
                commands[-1].append(word)
        for words in commands:
            for i in range(len(words) - 1):
                if words[i] in {"pip", "pip3"} and words[i + 1] == "install":
                    found.append(words[i + 2 :])
                    break
    return found


def image_problems(text: str, *, edge: bool, port: int, health_path: str) -> list[str]:
    """Everything wrong with a Dockerfile under the project's image rules (empty: fine)."""
    problems: list[str] = []
    stages = parse(text)
    if len(stages) < 2:
        problems.append("not multi-stage (needs a build stage and a runtime stage)")
    names = {s.name for s in stages if s.name}
    for s in stages:
        if s.base in names:
            continue
        ref = s.base.rsplit("/", 1)[-1]
        if "@sha256:" not in s.base and (
            ":" not in ref or ref.endswith(":latest") or not re.search(r":.*\d", ref)
        ):
            problems.append(f"base image {s.base} is not pinned to a version")
    final = stages[-1] if stages else Stage("", None)
    users = final.all("USER")
    if not users:
        problems.append("final stage sets no USER (runs as root)")
    elif users[-1].split(":")[0] in {"0", "root"} or not users[-1].split(":")[0].isdigit():
        problems.append(f"final USER {users[-1]!r} must be a numeric non-root uid (runAsNonRoot checks it)")
    checks = final.all("HEALTHCHECK")
    if not checks:
        problems.append("final stage has no HEALTHCHECK")
    elif f"127.0.0.1:{port}{health_path}" not in checks[-1]:
        problems.append(f"HEALTHCHECK does not probe 127.0.0.1:{port}{health_path}")
    exposed = {int(p.split("/")[0]) for e in final.all("EXPOSE") for p in e.split()}
    if exposed != {port}:
        problems.append(f"EXPOSE {sorted(exposed)} != {port}")
    for s in stages:
        for args in pip_installs(s):
            constrained = any(a in {"-c", "--constraint", "-r", "--requirement"} for a in args)
            takes_value = {
                "-c",
                "--constraint",
                "-r",
                "--requirement",
                "--index-url",
                "-i",
                "--extra-index-url",
            }
            pkgs = [
                a
                for i, a in enumerate(args)
                if not a.startswith("-") and not (i > 0 and args[i - 1] in takes_value)
            ]
            for p in pkgs:
                local = p.startswith(".")
                if local and not constrained:
                    problems.append(f"pip install {p} without a --constraint file (unpinned dependencies)")
                if not local and "==" not in p:
                    problems.append(f"pip install {p} is not pinned (==)")
                if edge and re.match(rf"^({'|'.join(TORCH_LIKE)})\b", p.split("==")[0].lower()):
                    problems.append(f"edge image installs {p}")
                if (
                    edge
                    and local
                    and re.search(r"\[(.*)\]", p)
                    and set(re.search(r"\[(.*)\]", p).group(1).split(",")) - {"edge"}
                ):  # type: ignore[union-attr]
                    problems.append(f"edge image installs extras {p} (only [edge] has no torch)")
    return problems


def exec_form(arg: str) -> list[str]:
    loaded = json.loads(arg)
    assert isinstance(loaded, list)
    return [str(x) for x in loaded]


def command_of(text: str) -> list[str]:
    """ENTRYPOINT + CMD of the final stage (exec form)."""
    final = parse(text)[-1]
    return [*exec_form(final.all("ENTRYPOINT")[-1]), *exec_form(final.all("CMD")[-1])]


def copied_sources(text: str) -> list[str]:
    """Sources of COPY instructions that read the build context (not --from=stage)."""
    sources: list[str] = []
    for stage in parse(text):
        for arg in stage.all("COPY"):
            if "--from=" in arg:
                continue
            words = [w for w in shlex.split(arg) if not w.startswith("--")]
            sources += words[:-1]
    return sources


def dockerignore_allows(ignore_text: str, source: str) -> bool:
    """For the ``*`` + ``!path`` style ignore files used here: is ``source`` sent to the builder?"""
    lines = [ln.strip() for ln in ignore_text.splitlines() if ln.strip() and not ln.startswith("#")]
    if "*" not in lines:
        return True
    wanted = source.rstrip("/")
    return any(ln.startswith("!") and wanted == ln[1:].rstrip("/") for ln in lines)


def extra_closure(pyproject: dict[str, object], extra: str, project: str) -> set[str]:
    """Requirement names an extra pulls in, following ``project[other]`` self-references."""
    extras = pyproject["project"]["optional-dependencies"]  # type: ignore[index]
    base = pyproject["project"]["dependencies"]  # type: ignore[index]
    seen: set[str] = set()
    names: set[str] = {re.split(r"[<>=\[;! ]", d, maxsplit=1)[0].lower() for d in base}  # type: ignore[union-attr]
    todo = [extra]
    while todo:
        e = todo.pop()
        if e in seen:
            continue
        seen.add(e)
        for req in extras[e]:  # type: ignore[index]
            name = re.split(r"[<>=\[;! ]", req, maxsplit=1)[0].lower()
            if name == project:
                todo += re.search(r"\[(.*)\]", req).group(1).split(",")  # type: ignore[union-attr]
            else:
                names.add(name)
    return names


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")
