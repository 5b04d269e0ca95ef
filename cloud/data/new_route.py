"""Data for growing the route set: the route ``shift_schedule`` written as paraphrase families, and
the frozen evaluation set of the new-route benchmark (``benchmarks/bench_loop.py``).

``shift_schedule`` is not one of the nine default routes: no checkpoint, template, cue word or
meta-training task has seen it. Its families follow ``cloud.data.paraphrase_families``: one family
is one way of saying a meaning, with several surface forms in English and Chinese, and carries
its split (``"train"``: the pool the k support examples are drawn from; ``"eval"``: held out).

The evaluation set ``cloud/data/frozen/new_route_eval.jsonl`` (sha256 :data:`FROZEN_NEW_ROUTE_SHA256`)
was written by ``python -m cloud.data.new_route --freeze`` and committed on its own before any
model was adapted or evaluated on it (docs/EVALUATION.md, "New-route evaluation"). It holds

- ``kind="new"``: every ``shift_schedule`` item of the held-out families (EN and ZH);
- ``kind="other"``: the test split of the default generator (seed 0, 12 examples per held-out
  template: the phrasings a seed-0 checkpoint never trained on) for the nine other routes.

The paraphrase route items of ``reasoning_eval_v2.jsonl`` (already frozen; ``_v3`` holds the
same) are a second set for the other routes. The rule: never edit these families after looking
at evaluation errors; re-split instead (new held-out families, a new frozen file, numbers
reported next to the old).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cloud.data.example import Example
from cloud.data.generator import SplitSpec, default_splits
from cloud.data.paraphrase_families import Family

NEW_ROUTE = "shift_schedule"
FROZEN_NEW_ROUTE = Path(__file__).with_name("frozen") / "new_route_eval.jsonl"
FROZEN_NEW_ROUTE_SHA256 = "eb79afaa319b8d184a55c4c94fcb668a041f8d165bfa4bb9ad35fcd6e129ea7a"
NEW_ROUTE_EVAL_SEED = 20261205
OTHER_SEED = 0  # the generator seed of the base checkpoints (their test templates are unseen)
OTHER_SPEC = SplitSpec(eval_per_template=12)


def _f(fid: str, split: str, en: list[str], zh: list[str]) -> Family:
    return Family(fid, split, tuple(en), tuple(zh))


# slots: <day>, <shift>, <person>, <line>, <period>
NEW_ROUTE_FAMILIES: dict[str, list[Family]] = {
    NEW_ROUTE: [
        _f(
            "shift.when",
            "train",
            [
                "when is my next shift?",
                "what time does my shift start on <day>?",
                "am I on the <shift> <day>?",
            ],
            ["我下一个班是什么时候", "我<day>几点上班", "我<day>是不是上<shift>"],
        ),
        _f(
            "shift.who",
            "train",
            [
                "who is on the <shift> on <day>?",
                "who works the <shift> on <line> <period>?",
                "which crew has the <shift> on <day>?",
            ],
            ["<day><shift>是谁值班", "<period><line><shift>谁上", "<day>哪个班组上<shift>"],
        ),
        _f(
            "shift.roster",
            "train",
            [
                "show me the shift roster for <period>",
                "what does the rota look like for <day>?",
                "print the shift plan for <line> <period>",
            ],
            ["给我看<period>的排班表", "<day>的排班是怎样的", "把<line><period>的排班计划打出来"],
        ),
        _f(
            "shift.swap",
            "train",
            [
                "can I swap my <shift> on <day> with <person>?",
                "I need to trade shifts with <person> on <day>",
                "request a shift change for <day>",
            ],
            ["我<day>的<shift>能和<person>换吗", "我想跟<person>调一下<day>的班", "申请<day>调班"],
        ),
        _f(
            "shift.leave",
            "train",
            ["put me down as off on <day>", "I can't make my <shift> on <day>, take me off the schedule"],
            ["<day>给我排休", "我<day>的<shift>来不了，把我从排班里去掉"],
        ),
        # held out: never drawn as support, never seen by any adaptation
        _f(
            "shift.duty",
            "eval",
            [
                "am I working this weekend?",
                "which days am I scheduled for <period>?",
                "do I have to come in on <day>?",
            ],
            ["我这周末要上班吗", "<period>我排了哪几天", "我<day>要来厂里吗"],
        ),
        _f(
            "shift.cover",
            "eval",
            [
                "who is covering for <person> on <day>?",
                "who takes over from the <shift> crew on <line>?",
                "who relieves <person> at the end of the <shift>?",
            ],
            ["<day>谁替<person>的班", "<line><shift>下班后谁接班", "<shift>结束后谁来接<person>的岗"],
        ),
        _f(
            "shift.hours",
            "eval",
            [
                "how many hours am I rostered for <period>?",
                "when do I clock off on <day>?",
                "how long is my <shift> on <day>?",
            ],
            ["<period>我排了多少小时的班", "我<day>几点下班", "我<day>的<shift>要上多久"],
        ),
    ],
}

_SLOTS: dict[str, dict[str, list[str]]] = {
    "en": {
        "day": [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
            "the 14th",
            "the 21st",
        ],
        "shift": ["night shift", "early shift", "late shift", "day shift", "weekend shift"],
        "person": ["Li Wei", "Anna Schmidt", "Zhang Min", "Tom Baker", "Wang Fang", "Maria Garcia"],
        "line": ["line 3", "the packaging line", "assembly line B", "the paint line", "line 7"],
        "period": ["next week", "this week", "this month", "the coming two weeks", "December"],
    },
    "zh": {
        "day": ["周一", "周二", "周三", "周四", "周五", "周六", "周日", "明天", "14号", "下周五"],
        "shift": ["夜班", "早班", "中班", "白班", "周末班"],
        "person": ["李伟", "张敏", "王芳", "刘洋", "陈静", "赵强"],
        "line": ["3号线", "包装线", "B装配线", "喷漆线", "7号线"],
        "period": ["下周", "这周", "这个月", "接下来两周", "十二月"],
    },
}
_SLOT = re.compile(r"<(day|shift|person|line|period)>")
_WRAP = {
    "en": ["{t}", "hey, {t}", "please tell me: {t}", "quick question, {t}"],
    "zh": ["{t}", "请问{t}", "{t}？", "麻烦问下，{t}"],
}


@dataclass(frozen=True)
class RouteItem:
    """One item of the frozen new-route evaluation set."""

    id: str
    kind: str  # "new" | "other"
    lang: str
    text: str
    route: str
    family: str  # paraphrase family ("new") or generator template id ("other")

    def to_example(self) -> Example:
        return Example(text=self.text, route=self.route, lang=self.lang, template_id=self.family)


def _fill(tmpl: str, lang: str, rng: random.Random) -> str:
    text = _SLOT.sub(lambda m: rng.choice(_SLOTS[lang][m.group(1)]), tmpl)
    text = rng.choice(_WRAP[lang]).format(t=text)
    return text[0].upper() + text[1:] if lang == "en" and text else text


def family_examples(route: str, split: str, per_template: int, seed: int) -> list[Example]:
    """Distinct examples of ``route``'s families of ``split`` (``template_id`` = family id)."""
    rng = random.Random(f"new-route:{route}:{split}:{seed}")
    out: list[Example] = []
    for fam in NEW_ROUTE_FAMILIES[route]:
        if fam.split != split:
            continue
        for lang in ("en", "zh"):
            for tmpl in fam.en if lang == "en" else fam.zh:
                seen: set[str] = set()
                for _ in range(per_template * 8):
                    if len(seen) >= per_template:
                        break
                    text = _fill(tmpl, lang, rng)
                    if text not in seen:
                        seen.add(text)
                        out.append(Example(text=text, route=route, lang=lang, template_id=fam.id))
    return out


def support_pool(route: str = NEW_ROUTE, seed: int = 0, per_template: int = 6) -> list[Example]:
    """Candidate support examples (training families only) in a seeded order."""
    pool = family_examples(route, "train", per_template, seed)
    random.Random(f"support:{route}:{seed}").shuffle(pool)
    return pool


def support_set(k: int, route: str = NEW_ROUTE, seed: int = 0) -> list[Example]:
    """``k`` support examples spread over the training families and both languages (seeded)."""
    by_key: dict[tuple[str, str], list[Example]] = {}
    for ex in support_pool(route, seed):
        by_key.setdefault((ex.template_id, ex.lang), []).append(ex)
    keys = sorted(by_key)
    random.Random(f"support-order:{route}:{seed}").shuffle(keys)
    out: list[Example] = []
    i = 0
    while len(out) < k and any(by_key.values()):
        bucket = by_key[keys[i % len(keys)]]
        if bucket:
            out.append(bucket.pop(0))
        i += 1
    return out


def build_eval() -> list[RouteItem]:
    """The evaluation set (what ``--freeze`` writes)."""
    items = [
        RouteItem(f"new-{i}", "new", ex.lang, ex.text, ex.route, ex.template_id)
        for i, ex in enumerate(family_examples(NEW_ROUTE, "eval", 6, NEW_ROUTE_EVAL_SEED))
    ]
    test = default_splits(OTHER_SEED, OTHER_SPEC)["test"]
    items += [
        RouteItem(f"other-{i}", "other", ex.lang, ex.text, ex.route, ex.template_id)
        for i, ex in enumerate(test)
    ]
    return items


def dumps(items: list[RouteItem]) -> str:
    return "".join(json.dumps(asdict(it), ensure_ascii=False, sort_keys=True) + "\n" for it in items)


def load_frozen_new_route_eval(path: Path = FROZEN_NEW_ROUTE) -> list[RouteItem]:
    """The frozen new-route evaluation set (read-only: regenerate only by re-splitting)."""
    rows: list[dict[str, Any]] = [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line
    ]
    return [RouteItem(**row) for row in rows]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    text = dumps(build_eval())
    if "--freeze" in args:
        if FROZEN_NEW_ROUTE.exists():
            print(
                f"{FROZEN_NEW_ROUTE} exists: the evaluation set is frozen "
                "(re-split with new families instead)"
            )
            return 1
        FROZEN_NEW_ROUTE.write_text(text, encoding="utf-8")
    print(f"{len(text.splitlines())} evaluation items, sha256 {sha256_text(text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
