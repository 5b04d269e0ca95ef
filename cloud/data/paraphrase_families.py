"""Paraphrase families: many ways of saying one meaning, grouped by *family* (one way of saying
it: a formal noun phrase, a colloquial verb, an idiom, a terse fragment …), in English and
Chinese. A family is the unit of the train / evaluation split (``cloud.data.paraphrase``): a
whole family is either seen in training or held out, so the evaluation measures phrasings no
model and no rule was built from.

``{x}`` is the slot of the entity (or of a nested noun phrase for multi-hop questions).

- ``NP_FAMILIES``: per relation, noun-phrase families that nest ("the boss of the person who
  keeps {x} running").
- ``Q_FAMILIES``: per relation, whole one-hop questions; their ``{x}`` may hold a nested noun
  phrase, which makes multi-hop questions.
- ``IMPLICIT_FAMILIES``: per (start type, path), questions that skip a hop ("which plant is
  PR-111 in?" = machine → line → site).
- ``FRAMES``: questions around a noun phrase, per answer kind.
- ``DISTRACTORS``: context with numbers and time words that must not change the answer.
- ``ROUTE_FAMILIES``: the other routes (slots in ``<…>``), ``NONSENSE_FAMILIES``: out-of-scope
  and meaningless requests, labelled ``unsure``.

The split of each family is written next to it (``"eval"`` or ``"train"``), fixed when the
families were written and before any model or rule was evaluated on them (docs/EVALUATION.md,
"Reasoning evaluation").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K")

# the round the tables are at (docs/EVALUATION.md, "Reasoning evaluation"): 2 = the families of
# reasoning_eval_v2.jsonl, 3 = re-split 3 (new graph families, the old graph ones in training;
# reasoning_eval_v3.jsonl), 4 = more training families, the evaluation families of v3 unchanged.
# The default is round 3: round 4 did not gain over it (docs/EVALUATION.md, "Round 4"); its
# families stay below, used only by ``train_items(resplit=4)``.
RESPLIT = 3


@dataclass(frozen=True)
class Family:
    id: str
    split: str  # "train" | "eval"
    en: tuple[str, ...]
    zh: tuple[str, ...]
    since: int = 0  # the re-split that wrote the family or moved it to its split (0: the first set)
    before: str = ""  # its split before ``since`` ("": not written yet)

    def split_at(self, resplit: int) -> str:
        """The family's split as of re-split ``resplit`` ("" where it did not exist yet)."""
        return self.split if resplit >= self.since else self.before


def _f(fid: str, split: str, en: list[str], zh: list[str], since: int = 0, before: str = "") -> Family:
    return Family(fid, split, tuple(en), tuple(zh), since, before)


NP_FAMILIES: dict[str, list[Family]] = {
    "located_on_line": [
        _f(
            "line.formal",
            "train",
            ["the production line of {x}", "the line {x} is installed on"],
            ["{x}所在的产线", "{x}所属的生产线"],
        ),
        _f(
            "line.where",
            "train",
            ["the line where {x} sits", "whichever line has {x}"],
            ["放{x}的那条线", "{x}装在哪条线上的那条线"],
        ),
        _f(
            "line.home",
            "train",
            ["the line that {x} lives on", "the assembly run {x} is part of"],
            ["{x}待的那条线", "{x}归属的那条流水线"],
            3,
            "eval",
        ),
    ],
    "line_of_site": [
        _f(
            "site.formal",
            "train",
            ["the site of {x}", "the plant that {x} belongs to"],
            ["{x}所属的工厂", "{x}所在的厂区"],
        ),
        _f(
            "site.where",
            "train",
            ["the factory where {x} is", "the plant housing {x}"],
            ["{x}所在的那个厂", "{x}在的工厂"],
        ),
        _f(
            "site.home",
            "train",
            ["the location {x} is part of", "the works that {x} is at"],
            ["{x}隶属的基地", "{x}落在的那个园区"],
            3,
            "eval",
        ),
    ],
    "maintained_by": [
        _f(
            "maint.formal",
            "train",
            ["the technician who maintains {x}", "the maintainer of {x}"],
            ["{x}的维护人员", "负责维护{x}的人"],
        ),
        _f(
            "maint.repair",
            "train",
            ["the person who repairs {x}", "the one who fixes {x} when it breaks"],
            ["修{x}的人", "{x}坏了负责修的人"],
        ),
        _f(
            "maint.care",
            "train",
            ["the person who keeps {x} in good shape", "the one who looks after upkeep of {x}"],
            ["照看{x}的师傅", "给{x}做保养的师傅"],
            3,
            "eval",
        ),
    ],
    "operated_by": [
        _f(
            "oper.formal",
            "train",
            ["the operator of {x}", "the person who operates {x}"],
            ["{x}的操作员", "操作{x}的人"],
        ),
        _f(
            "oper.run",
            "train",
            ["the worker running {x}", "whoever runs {x} on shift"],
            ["开{x}的工人", "平时开{x}的人"],
        ),
        _f(
            "oper.drive",
            "train",
            ["the person at the controls of {x}", "the one who drives {x} day to day"],
            ["在{x}上干活的人", "守着{x}的员工"],
            3,
            "eval",
        ),
    ],
    "supervised_by": [
        _f(
            "sup.formal",
            "train",
            ["the supervisor of {x}", "the person who supervises {x}"],
            ["{x}的主管", "{x}的上级"],
        ),
        _f("sup.boss", "train", ["the boss of {x}", "the person {x} reports to"], ["{x}的领导", "管{x}的人"]),
        _f(
            "sup.over",
            "train",
            ["the person above {x}", "the one who oversees {x}"],
            ["{x}的顶头上司", "带{x}的那个头儿"],
            3,
            "eval",
        ),
    ],
    "supplied_by": [
        _f(
            "supp.formal",
            "train",
            ["the supplier of {x}", "the vendor that supplied {x}"],
            ["{x}的供应商", "提供{x}的供应商"],
        ),
        _f(
            "supp.make",
            "train",
            ["the manufacturer of {x}", "the company that built {x}"],
            ["{x}的生产厂家", "{x}的制造商"],
        ),
        _f(
            "supp.buy",
            "train",
            ["the firm we bought {x} from", "the brand behind {x}"],
            ["{x}是从哪家买的那家公司", "{x}的出厂品牌"],
            3,
            "eval",
        ),
    ],
    "sensor_of": [
        _f(
            "sens.formal",
            "train",
            ["the machine that {x} is mounted on", "the equipment fitted with {x}"],
            ["{x}所在的设备", "安装了{x}的机器"],
        ),
        _f(
            "sens.attach",
            "train",
            ["the machine {x} is attached to", "the machine carrying {x}"],
            ["{x}装在的设备", "配有{x}的机台"],
        ),
        _f(
            "sens.host",
            "train",
            ["the unit that {x} sits on", "the asset {x} is wired into"],
            ["{x}挂在的那台设备", "{x}接在哪台机器上的那台机器"],
            3,
            "eval",
        ),
    ],
    "has_role": [
        _f("role.formal", "train", ["the role of {x}", "the job title of {x}"], ["{x}的职位", "{x}的岗位"]),
        _f("role.job", "train", ["the position of {x}", "the job {x} holds"], ["{x}的角色", "{x}担任的职务"]),
        _f(
            "role.does",
            "train",
            ["what {x} does for a living here", "the line of work of {x}"],
            ["{x}是干什么的", "{x}平时干的活"],
            3,
            "eval",
        ),
    ],
    "maintenance_interval": [
        _f(
            "intv.formal",
            "train",
            ["the maintenance interval of {x}", "the service schedule for {x}"],
            ["{x}的保养周期", "{x}的维护频率"],
        ),
        _f(
            "intv.often",
            "train",
            ["how often {x} gets serviced", "how frequently {x} is maintained"],
            ["{x}多久保养一次", "{x}多长时间检修一次"],
        ),
        _f(
            "intv.due",
            "train",
            ["the gap between upkeep visits for {x}", "the cadence of preventive work on {x}"],
            ["{x}隔多少天要保养", "{x}的定期保养节奏"],
            3,
            "eval",
        ),
    ],
    "works_at": [
        _f(
            "work.formal",
            "train",
            ["the site where {x} works", "the workplace of {x}"],
            ["{x}工作的工厂", "{x}的工作地点"],
        ),
        _f(
            "work.employ",
            "train",
            ["the plant employing {x}", "the factory {x} works at"],
            ["{x}上班的厂区", "{x}任职的工厂"],
        ),
        _f(
            "work.shows",
            "train",
            ["the site {x} clocks in at", "the place {x} reports for duty"],
            ["{x}打卡的地方", "{x}每天去的那个厂"],
            3,
            "eval",
        ),
    ],
    "based_in": [
        _f(
            "ctry.formal",
            "train",
            ["the country where {x} is based", "the home country of {x}"],
            ["{x}所在的国家", "{x}的总部所在国家"],
        ),
        _f(
            "ctry.from",
            "train",
            ["the country {x} comes from", "the nation {x} is headquartered in"],
            ["{x}来自的国家", "{x}是哪个国家的"],
        ),
        _f(
            "ctry.origin",
            "train",
            ["the homeland of {x}", "where in the world {x} is from"],
            ["{x}的老家在哪个国", "{x}属于哪国的企业"],
            3,
            "eval",
        ),
    ],
    "managed_by": [
        _f(
            "mgr.formal",
            "train",
            ["the manager of {x}", "the person who manages {x}"],
            ["{x}的厂长", "{x}的经理"],
        ),
        _f(
            "mgr.head",
            "train",
            ["the head of {x}", "the director in charge of {x}"],
            ["管理{x}的人", "{x}的负责人"],
        ),
        _f(
            "mgr.top",
            "train",
            ["the top person at {x}", "who calls the shots at {x}"],
            ["{x}的一把手", "{x}说了算的人"],
            3,
            "eval",
        ),
    ],
}

Q_FAMILIES: dict[str, list[Family]] = {
    "located_on_line": [
        _f(
            "q.line.which",
            "train",
            ["Which line is {x} on?", "What line has {x}?"],
            ["{x}在哪条产线？", "{x}是哪条线的？"],
        ),
        _f(
            "q.line.find",
            "train",
            ["Where on the floor would I find {x}, which line?", "{x} runs on what line?"],
            ["去哪条线能找到{x}？", "{x}放在哪条流水线？"],
            3,
            "eval",
        ),
    ],
    "line_of_site": [
        _f(
            "q.site.which",
            "train",
            ["Which plant is {x} at?", "What site is {x} in?"],
            ["{x}在哪个工厂？", "{x}属于哪个厂？"],
        ),
        _f(
            "q.site.where",
            "train",
            ["Where is {x} located, which works?", "{x} is at which location?"],
            ["{x}落在哪个基地？", "{x}是哪个园区的？"],
            3,
            "eval",
        ),
    ],
    "maintained_by": [
        _f(
            "q.maint.who",
            "train",
            ["Who maintains {x}?", "Who repairs {x}?"],
            ["谁维护{x}？", "{x}由谁检修？"],
        ),
        _f(
            "q.maint.broke",
            "train",
            ["If {x} breaks down, who do I call?", "Who fixes {x}?"],
            ["{x}出故障了找谁？", "谁修{x}？"],
        ),
        _f(
            "q.maint.care",
            "train",
            ["Who keeps {x} in working order?", "Who takes care of {x}'s upkeep?"],
            ["{x}坏了找谁修？", "谁照看{x}？"],
            3,
            "eval",
        ),
    ],
    "operated_by": [
        _f("q.oper.who", "train", ["Who operates {x}?", "Who runs {x}?"], ["谁操作{x}？", "{x}是谁在开？"]),
        _f(
            "q.oper.shift",
            "train",
            ["Who is at the controls of {x}?", "Who mans {x}?"],
            ["谁在{x}上干活？", "{x}平时谁守着？"],
            3,
            "eval",
        ),
    ],
    "supervised_by": [
        _f(
            "q.sup.who",
            "train",
            ["Who supervises {x}?", "Who is {x}'s boss?"],
            ["谁管{x}？", "{x}的领导是谁？"],
        ),
        _f(
            "q.sup.report",
            "train",
            ["Who does {x} report to?", "Who is in charge of {x}?"],
            ["{x}向谁汇报？", "{x}归谁管？"],
        ),
        _f(
            "q.sup.over",
            "train",
            ["Who oversees {x}?", "Who is above {x}?"],
            ["谁带{x}？", "{x}的顶头上司是谁？"],
            3,
            "eval",
        ),
    ],
    "supplied_by": [
        _f(
            "q.supp.who",
            "train",
            ["Who supplied {x}?", "Who made {x}?"],
            ["{x}是谁供应的？", "{x}是哪家厂商做的？"],
        ),
        _f(
            "q.supp.buy",
            "train",
            ["Which firm did we buy {x} from?", "What brand is {x}?"],
            ["{x}是从哪家买的？", "{x}是什么牌子的？"],
            3,
            "eval",
        ),
    ],
    "sensor_of": [
        _f(
            "q.sens.which",
            "train",
            ["Which machine is {x} mounted on?", "What equipment carries {x}?"],
            ["{x}装在哪台设备上？", "{x}在哪台机器上？"],
        ),
        _f(
            "q.sens.host",
            "train",
            ["{x} is wired into which unit?", "What asset does {x} sit on?"],
            ["{x}挂在哪台设备上？", "{x}接的是哪台机器？"],
            3,
            "eval",
        ),
    ],
    "has_role": [
        _f(
            "q.role.what",
            "train",
            ["What is {x}'s job?", "What position does {x} hold?"],
            ["{x}是什么职位？", "{x}的岗位是什么？"],
        ),
        _f(
            "q.role.does",
            "train",
            ["What does {x} do here?", "What's {x}'s line of work?"],
            ["{x}是干什么的？", "{x}平时干什么活？"],
            3,
            "eval",
        ),
    ],
    "maintenance_interval": [
        _f(
            "q.intv.often",
            "train",
            ["How often is {x} serviced?", "What is the maintenance schedule of {x}?"],
            ["{x}多久保养一次？", "{x}的保养周期是多少？"],
        ),
        _f(
            "q.intv.due",
            "train",
            ["How long between upkeep visits for {x}?", "At what cadence does {x} get preventive work?"],
            ["{x}隔多少天要保养？", "{x}多长时间要做一次定期保养？"],
            3,
            "eval",
        ),
    ],
    "works_at": [
        _f(
            "q.work.where",
            "train",
            ["Where does {x} work?", "Which plant employs {x}?"],
            ["{x}在哪里工作？", "{x}在哪个厂上班？"],
        ),
        _f(
            "q.work.clock",
            "train",
            ["Where does {x} clock in?", "Which site does {x} report to each day?"],
            ["{x}在哪儿打卡？", "{x}每天去哪个厂？"],
            3,
            "eval",
        ),
    ],
    "based_in": [
        _f(
            "q.ctry.where",
            "train",
            ["Which country is {x} based in?", "Where is {x} headquartered?"],
            ["{x}是哪个国家的公司？", "{x}的总部在哪个国家？"],
        ),
        _f(
            "q.ctry.origin",
            "train",
            ["What's the homeland of {x}?", "Where in the world is {x} from?"],
            ["{x}老家是哪国？", "{x}是哪国企业？"],
            3,
            "eval",
        ),
    ],
    "managed_by": [
        _f(
            "q.mgr.who",
            "train",
            ["Who manages {x}?", "Who is the head of {x}?"],
            ["谁管理{x}？", "{x}的厂长是谁？"],
        ),
        _f(
            "q.mgr.top",
            "train",
            ["Who calls the shots at {x}?", "Who is the top person at {x}?"],
            ["{x}谁说了算？", "{x}的一把手是谁？"],
            3,
            "eval",
        ),
    ],
}

# questions that skip a hop: (start type, path) -> families
IMPLICIT_FAMILIES: dict[tuple[str, tuple[str, ...]], list[Family]] = {
    ("machine", ("located_on_line", "line_of_site")): [
        _f(
            "imp.m.site.which",
            "train",
            ["Which plant is {x} in?", "What factory is {x} at?"],
            ["{x}在哪个工厂？", "{x}是哪个厂的设备？"],
        ),
        _f(
            "imp.m.site.where",
            "train",
            ["{x} is at which location?", "Where is {x}, which works?"],
            ["{x}落在哪个基地？", "{x}放在哪个园区？"],
            3,
            "eval",
        ),
    ],
    ("machine", ("supplied_by", "based_in")): [
        _f(
            "imp.m.ctry.from",
            "train",
            ["What country is {x} from?", "Which country made {x}?"],
            ["{x}是哪个国家的设备？", "{x}是哪国产的？"],
        ),
        _f(
            "imp.m.ctry.origin",
            "train",
            ["Where in the world does {x} come from?", "What's the homeland of {x}?"],
            ["{x}老家是哪国？", "{x}是进口自哪国的？"],
            3,
            "eval",
        ),
    ],
    ("sensor", ("sensor_of", "located_on_line")): [
        _f(
            "imp.s.line.which",
            "train",
            ["Which line is {x} on?", "What line has {x}?"],
            ["{x}在哪条产线上？", "{x}是哪条线的？"],
        ),
        _f(
            "imp.s.line.find",
            "train",
            ["Where on the floor is {x}, which line?", "{x} runs on what line?"],
            ["去哪条线能找到{x}？", "{x}放在哪条流水线？"],
            3,
            "eval",
        ),
    ],
    ("sensor", ("sensor_of", "maintained_by")): [
        _f(
            "imp.s.maint.who",
            "train",
            ["Who repairs {x}?", "Who maintains {x}?"],
            ["谁维护{x}？", "{x}由谁检修？"],
        ),
        _f(
            "imp.s.maint.care",
            "train",
            ["Who keeps {x} in working order?", "Who takes care of {x}'s upkeep?"],
            ["{x}坏了找谁修？", "谁照看{x}？"],
            3,
            "eval",
        ),
    ],
    ("sensor", ("sensor_of", "located_on_line", "line_of_site")): [
        _f(
            "imp.s.site.which",
            "train",
            ["Which plant is {x} in?", "What factory has {x}?"],
            ["{x}在哪个工厂？", "{x}是哪个厂的？"],
        ),
        _f(
            "imp.s.site.where",
            "train",
            ["{x} is at which location?", "Where is {x}, which works?"],
            ["{x}落在哪个基地？", "{x}放在哪个园区？"],
            3,
            "eval",
        ),
    ],
    ("machine", ("located_on_line", "line_of_site", "managed_by")): [
        _f(
            "imp.m.mgr.who",
            "train",
            ["Who is the plant manager for {x}?", "Who manages the factory {x} is in?"],
            ["{x}所在厂的厂长是谁？", "管{x}那个厂的经理是谁？"],
        ),
        _f(
            "imp.m.mgr.top",
            "train",
            ["Who calls the shots at the place where {x} is?", "Who is the top person where {x} sits?"],
            ["{x}那边谁说了算？", "{x}所在地方的一把手是谁？"],
            3,
            "eval",
        ),
    ],
    ("person", ("works_at", "managed_by")): [
        _f(
            "imp.p.mgr.who",
            "train",
            ["Who is {x}'s plant manager?", "Who runs the plant {x} works at?"],
            ["{x}的厂长是谁？", "{x}上班那个厂的经理是谁？"],
        ),
        _f(
            "imp.p.mgr.top",
            "train",
            ["Who calls the shots where {x} clocks in?", "Who is the top person at {x}'s workplace?"],
            ["{x}那个厂谁说了算？", "{x}单位的一把手是谁？"],
            3,
            "eval",
        ),
    ],
}

FRAMES: dict[str, list[Family]] = {
    "person": [
        _f("fr.p.who", "train", ["Who is {np}?", "Tell me {np}."], ["{np}是谁？", "告诉我{np}。"]),
        _f(
            "fr.p.name",
            "train",
            ["Name {np}.", "Do you know who {np} is?"],
            ["请问{np}是哪位？", "你知道{np}是谁吗？"],
        ),
        _f(
            "fr.p.casual",
            "eval",
            ["Any idea who {np} is?", "I need {np}, who's that?"],
            ["{np}叫什么名字？", "帮我找一下{np}。"],
        ),
    ],
    "other": [
        _f("fr.o.what", "train", ["What is {np}?", "Tell me {np}."], ["{np}是什么？", "告诉我{np}。"]),
        _f(
            "fr.o.look",
            "train",
            ["Which is {np}?", "Can you look up {np}?"],
            ["{np}是哪个？", "帮我查一下{np}。"],
        ),
        _f(
            "fr.o.casual",
            "eval",
            ["Any idea what {np} is?", "I need {np}, what is it?"],
            ["{np}你知道吗？", "麻烦说一下{np}。"],
        ),
    ],
}

# context that carries numbers and time words but does not change the question
DISTRACTORS: list[Family] = [
    _f(
        "dis.shift",
        "train",
        ["Quick one for shift 3: {q}", "{q} Need it for the 14 day report."],
        ["三班问一下：{q}", "{q}周报第14页要用。"],
    ),
    _f(
        "dis.time",
        "train",
        ["It's 2 pm and {q}", "{q} We lost 45 minutes already today."],
        ["现在下午2点，{q}", "{q}今天已经停了45分钟。"],
    ),
    _f(
        "dis.count",
        "eval",
        ["Third time asking in 10 days: {q}", "{q} The audit is in 7 days."],
        ["10天里第3次问了：{q}", "{q}7天后要审核。"],
    ),
]

# other routes: slots <a> <b> <v> (numbers), <code> (a plant machine code), <city>, <month>
ROUTE_FAMILIES: dict[str, list[Family]] = {
    "calculator": [
        _f("calc.symbolic", "train", ["<a> + <b>", "what is <a> * <b>?"], ["<a>加<b>等于多少", "<a>乘以<b>"]),
        _f("calc.verbal", "train", ["<a> plus <b>", "<a> divided by <b>"], ["<a>减<b>", "<a>除以<b>是多少"]),
        _f(
            "calc.story",
            "eval",
            ["I had <a> parts and used <b>, how many are left?", "add up <a> and <b> for me"],
            ["一共<a>个零件用掉<b>个还剩几个", "帮我把<a>和<b>加起来"],
        ),
    ],
    "unit_convert": [
        _f(
            "unit.convert",
            "train",
            ["convert <v> km to miles", "<v> kg in pounds"],
            ["<v>公里等于多少英里", "把<v>公斤换算成磅"],
        ),
        _f(
            "unit.howmany",
            "train",
            ["how many psi is <v> bar", "<v> °C in Fahrenheit"],
            ["<v>巴是多少psi", "<v>摄氏度是多少华氏度"],
        ),
        _f(
            "unit.express",
            "eval",
            ["express <v> miles in kilometres", "what's <v> pounds in kilos"],
            ["<v>英里合多少公里", "<v>磅折合多少公斤"],
        ),
    ],
    "climate": [
        _f(
            "clim.avg",
            "train",
            [
                "What is the average temperature in <city> in <month>?",
                "How much rain does <city> get in <month>?",
            ],
            ["<city><month>的平均气温是多少", "<city><month>降水多吗"],
        ),
        _f(
            "clim.weather",
            "train",
            ["what's the weather like in <city> in <month>", "is <city> hot in <month>?"],
            ["<city><month>天气怎么样", "<city><month>热不热"],
        ),
        _f(
            "clim.pack",
            "eval",
            ["should I bring a coat to <city> in <month>?", "how cold does <city> get in <month>"],
            ["<month>去<city>要带外套吗", "<city><month>冷不冷"],
        ),
    ],
    "device_status": [
        _f(
            "stat.reading",
            "train",
            ["what is the temperature of <code>?", "show the status of <code>"],
            ["<code>现在温度多少", "查看<code>的状态"],
        ),
        _f(
            "stat.running",
            "train",
            ["is <code> running?", "is <code> online right now"],
            ["<code>在运行吗", "<code>在线吗"],
        ),
        _f(
            "stat.health",
            "eval",
            ["how is <code> doing at the moment?", "any alarms on <code> now?"],
            ["<code>现在情况如何", "<code>当前有没有报警"],
        ),
    ],
    "device_control": [
        _f("ctl.set", "train", ["set <code> to <v>", "turn off <code>"], ["把<code>设为<v>", "关闭<code>"]),
        _f("ctl.start", "train", ["start <code>", "restart <code>"], ["启动<code>", "重启<code>"]),
        _f(
            "ctl.power",
            "eval",
            ["shut down <code> please", "switch <code> on"],
            ["把<code>关掉", "把<code>打开"],
        ),
    ],
    "memory_recall": [
        _f(
            "mem.ask",
            "train",
            ["what did I just ask?", "what was my last question?"],
            ["我刚才问了什么", "我上一个问题是什么"],
        ),
        _f(
            "mem.answer",
            "train",
            ["repeat your last answer", "what did you just say?"],
            ["你刚才说了什么", "重复一下刚才的答案"],
        ),
        _f(
            "mem.history",
            "eval",
            ["how many questions have I asked so far?", "remind me what I asked before"],
            ["我之前问过几个问题", "提醒我之前问过什么"],
        ),
    ],
    "doc_search": [
        _f(
            "doc.howto",
            "train",
            ["how do I calibrate a pressure sensor?", "what is the lockout tagout procedure?"],
            ["压力传感器怎么校准", "上锁挂牌的程序是什么"],
        ),
        _f("doc.define", "train", ["what does OEE mean?", "explain MTBF"], ["OEE是什么意思", "解释一下MTBF"]),
        _f(
            "doc.rules",
            "eval",
            ["what PPE is required in the paint shop?", "what are the rules for hot work permits?"],
            ["喷漆车间要穿戴什么劳保用品", "动火作业许可有哪些规定"],
        ),
    ],
    "chitchat": [
        _f("chat.hello", "train", ["hello there", "good morning"], ["你好", "早上好"]),
        _f("chat.thanks", "train", ["thanks a lot", "who are you?"], ["谢谢", "你是谁"]),
        _f(
            "chat.casual",
            "eval",
            ["hey, how are you doing?", "what can you do?"],
            ["嗨，最近怎么样", "你能做什么"],
        ),
    ],
}

# Re-split 2 (docs/EVALUATION.md): the evaluation nonsense families of the first frozen set
# (``*2``) moved into training; the ``*3`` families were written for the second frozen set
# before anything was evaluated on them.
NONSENSE_FAMILIES: list[Family] = [
    _f("ns.mash", "train", ["asdf qwer zxcv", "lkjh gfds poiu"], ["啊啊啊哦哦哦", "嗯嗯嗯呃呃"]),
    _f(
        "ns.salad",
        "train",
        ["purple spreadsheet swims loudly", "banana voltage philosophy tuesday"],
        ["紫色的数学在游泳", "香蕉电压哲学星期二"],
    ),
    _f(
        "ns.world",
        "train",
        ["who won the football world cup in 1998?", "what is the capital of Peru?"],
        ["世界杯1998年谁赢了", "秘鲁的首都是哪里"],
    ),
    _f(
        "ns.request",
        "train",
        ["book me a flight to Mars", "write a poem about my cat"],
        ["帮我订一张去火星的机票", "给我的猫写一首诗"],
    ),
    _f("ns.mash2", "train", ["qwpeoriu zmxncb", "hjkl hjkl yuio"], ["呜呜呜嘿嘿嘿", "哈哈哈嘻嘻嘻嘿"]),
    _f(
        "ns.salad2",
        "train",
        ["the glass algebra sings of onions", "seventeen clouds negotiate the carpet"],
        ["玻璃代数在唱洋葱", "十七朵云在和地毯谈判"],
    ),
    _f(
        "ns.world2",
        "train",
        ["how tall is mount kilimanjaro?", "who painted the mona lisa?"],
        ["乞力马扎罗山有多高", "蒙娜丽莎是谁画的"],
    ),
    _f(
        "ns.request2",
        "train",
        ["order a pizza with pineapple", "tell me tomorrow's lottery numbers"],
        ["帮我点一份菠萝披萨", "告诉我明天的彩票号码"],
    ),
    _f("ns.mash3", "eval", ["zzkq vlorp", "fnarg bleeb wux"], ["呱呱呱咕咕", "啦啦啦嘟嘟嘟"]),
    _f(
        "ns.salad3",
        "eval",
        ["the triangle of soup forgets its umbrella", "quietly the elevator eats grammar"],
        ["雨伞在吃三角形的汤", "电梯悄悄地吃掉了语法"],
    ),
    _f(
        "ns.world3",
        "eval",
        ["when did the roman empire fall?", "what is the population of Brazil?"],
        ["罗马帝国什么时候灭亡的", "巴西有多少人口"],
    ),
    _f(
        "ns.request3",
        "eval",
        ["recommend a good movie for tonight", "translate hello into french"],
        ["推荐一部今晚看的电影", "把你好翻译成法语"],
    ),
]

# ---------------------------------------------------------------------------------------------
# Re-split 3 (2026-12-06, docs/EVALUATION.md "Reasoning evaluation"): two training families per
# relation were too few to learn a meaning from (validation ≈ 80 %, evaluation ≈ 60 %). New
# graph families were written here in one sitting, before any model was trained or evaluated on
# them: three more training families per relation (noun phrase and question), and one new
# evaluation family per relation and per implicit path, frozen in ``reasoning_eval_v3.jsonl``.
# The graph evaluation families of v2 moved into training (``since=3, before="eval"`` above);
# frames, distractors, routes and nonsense are unchanged. ``Family.split_at(2)`` gives the
# training data of v2 back, for the same-run comparison (benchmarks/reasoning_families.py).
# ---------------------------------------------------------------------------------------------


def _r3(fid: str, split: str, en: list[str], zh: list[str]) -> Family:
    return _f(fid, split, en, zh, 3, "")


_NP_RESPLIT3: dict[str, list[Family]] = {
    "located_on_line": [
        _r3(
            "line.belong",
            "train",
            [
                "the line {x} belongs to",
                "the production line that includes {x}",
                "the line {x} is assigned to",
            ],
            ["{x}属于的那条线", "包含{x}的生产线", "{x}分配到的产线"],
        ),
        _r3(
            "line.stand",
            "train",
            ["the line {x} stands on", "the line where {x} is set up", "the line {x} was put on"],
            ["{x}摆在的那条线", "安置{x}的产线", "{x}被放到的那条线"],
        ),
        _r3(
            "line.runs",
            "train",
            [
                "the manufacturing line {x} works in",
                "the line {x} runs in",
                "the assembly line containing {x}",
            ],
            ["{x}干活的那条产线", "{x}运转的那条生产线", "有{x}的装配线"],
        ),
        _r3(
            "line.r3",
            "eval",
            ["the line {x} is stationed along", "the run of stations that holds {x}"],
            ["{x}被安排在的那条线", "{x}落脚的那条线体"],
        ),
    ],
    "line_of_site": [
        _r3(
            "site.belong",
            "train",
            ["the factory {x} belongs to", "the facility that {x} is part of", "the plant containing {x}"],
            ["{x}归属的厂", "包含{x}的工厂", "{x}所在的生产基地"],
        ),
        _r3(
            "site.has",
            "train",
            ["the plant {x} is in", "the site that hosts {x}", "the site that has {x}"],
            ["{x}在的那个厂区", "有{x}的那个工厂", "{x}设在的厂"],
        ),
        _r3(
            "site.campus",
            "train",
            ["the campus {x} is on", "the location of {x}", "the premises {x} is at"],
            ["{x}所在的园区", "{x}的所在地", "{x}在的厂址"],
        ),
        _r3(
            "site.r3",
            "eval",
            ["the compound where {x} operates", "the establishment {x} is found in"],
            ["{x}所处的厂房", "{x}坐落的那个厂"],
        ),
    ],
    "maintained_by": [
        _r3(
            "maint.service",
            "train",
            [
                "the person who services {x}",
                "the technician responsible for servicing {x}",
                "whoever does the servicing on {x}",
            ],
            ["负责给{x}做检修的人", "给{x}检修的技术员", "保养{x}的人"],
        ),
        _r3(
            "maint.mech",
            "train",
            [
                "the mechanic for {x}",
                "the engineer assigned to maintain {x}",
                "the maintenance contact for {x}",
            ],
            ["{x}的机修师傅", "{x}的维修工", "{x}的维保负责人"],
        ),
        _r3(
            "maint.fix",
            "train",
            [
                "the one who patches up {x}",
                "the person who gets {x} running again after a fault",
                "the go-to repair person for {x}",
            ],
            ["{x}出问题时修理它的人", "把{x}修好的人", "{x}的维修联系人"],
        ),
        _r3(
            "maint.r3",
            "eval",
            ["the person who tends to {x} when it acts up", "the caretaker of {x}"],
            ["{x}闹毛病时来处理的人", "管{x}修修补补的人"],
        ),
    ],
    "operated_by": [
        _r3(
            "oper.use",
            "train",
            ["the person who uses {x} every day", "the user of {x}", "the worker assigned to operate {x}"],
            ["每天用{x}的人", "{x}的使用人", "被分配操作{x}的工人"],
        ),
        _r3(
            "oper.handle",
            "train",
            ["the one who handles {x}", "the person working {x}", "the machinist on {x}"],
            ["负责开动{x}的人", "操控{x}的工人", "{x}的机手"],
        ),
        _r3(
            "oper.station",
            "train",
            [
                "the worker stationed at {x}",
                "the person who runs {x} during production",
                "the crew member on {x}",
            ],
            ["在{x}岗位上的工人", "生产时开{x}的人", "{x}的当班操作工"],
        ),
        _r3(
            "oper.r3",
            "eval",
            ["the one who feeds and starts {x}", "the person tending {x} during the shift"],
            ["在{x}前面干活的操作手", "当班时摆弄{x}的人"],
        ),
    ],
    "supervised_by": [
        _r3(
            "sup.lead",
            "train",
            ["the line manager of {x}", "the team lead of {x}", "the superior of {x}"],
            ["{x}的直属领导", "{x}的组长", "{x}的上司"],
        ),
        _r3(
            "sup.answer",
            "train",
            ["the person {x} answers to", "whoever {x} works under", "the one who gives {x} orders"],
            ["给{x}布置任务的人", "{x}听命的人", "{x}头上的领导"],
        ),
        _r3(
            "sup.charge",
            "train",
            ["the person in charge of {x}", "the person responsible for {x}'s work", "the foreman over {x}"],
            ["负责管{x}的人", "{x}的工头", "对{x}负责的领导"],
        ),
        _r3(
            "sup.r3",
            "eval",
            ["the person who signs off on {x}'s timesheet", "the one {x} takes direction from"],
            ["安排{x}干活的人", "给{x}批假的人"],
        ),
    ],
    "supplied_by": [
        _r3(
            "supp.vendor",
            "train",
            ["the vendor of {x}", "the company that sold us {x}", "the maker of {x}"],
            ["卖给我们{x}的公司", "{x}的厂商", "{x}的卖家"],
        ),
        _r3(
            "supp.produce",
            "train",
            ["the company that produced {x}", "the firm that delivered {x}", "the OEM of {x}"],
            ["生产{x}的公司", "交付{x}的厂家", "{x}的原厂"],
        ),
        _r3(
            "supp.source",
            "train",
            ["the source of {x}", "the company we got {x} from", "the supplier company behind {x}"],
            ["{x}的来源公司", "我们采购{x}的那家公司", "{x}的货源厂家"],
        ),
        _r3(
            "supp.r3",
            "eval",
            ["the outfit that shipped {x} to us", "the company whose product {x} is"],
            ["把{x}运给我们的那家公司", "出品{x}的企业"],
        ),
    ],
    "sensor_of": [
        _r3(
            "sens.on",
            "train",
            ["the machine {x} is on", "the machine {x} belongs to", "the device that {x} is installed on"],
            ["{x}所属的机器", "{x}安装在的那台机器", "{x}属于的设备"],
        ),
        _r3(
            "sens.monitor",
            "train",
            ["the machine that {x} monitors", "the equipment {x} measures", "the machine {x} watches"],
            ["{x}监测的设备", "{x}测量的那台机器", "{x}监控的机台"],
        ),
        _r3(
            "sens.fit",
            "train",
            ["the machine with {x} installed", "the equipment that has {x}", "the machine housing {x}"],
            ["带有{x}的设备", "装着{x}的那台机器", "有{x}的机台"],
        ),
        _r3(
            "sens.r3",
            "eval",
            ["the machine that {x} keeps an eye on", "the host equipment of {x}"],
            ["{x}盯着的那台设备", "{x}的宿主设备"],
        ),
    ],
    "has_role": [
        _r3(
            "role.title",
            "train",
            ["the title of {x}", "the official position of {x}", "the role {x} has"],
            ["{x}的头衔", "{x}的正式职位", "{x}的身份"],
        ),
        _r3(
            "role.work",
            "train",
            ["the work {x} does", "the job of {x}", "the function {x} performs"],
            ["{x}做的工作", "{x}的工作", "{x}负责的职能"],
        ),
        _r3(
            "role.occup",
            "train",
            ["the occupation of {x}", "the profession of {x}", "what {x} is employed as"],
            ["{x}的职业", "{x}的工种", "{x}受雇担任的角色"],
        ),
        _r3(
            "role.r3",
            "eval",
            ["the kind of work {x} is hired for", "the trade of {x}"],
            ["{x}干的那一行", "{x}的本职工作"],
        ),
    ],
    "maintenance_interval": [
        _r3(
            "intv.period",
            "train",
            [
                "the service period of {x}",
                "the maintenance cycle of {x}",
                "the interval between services of {x}",
            ],
            ["{x}的维护周期", "{x}的保养间隔", "{x}两次保养之间的间隔"],
        ),
        _r3(
            "intv.freq",
            "train",
            [
                "the servicing frequency of {x}",
                "how regularly {x} is serviced",
                "how many days pass between maintenance for {x}",
            ],
            ["{x}的检修频率", "{x}多少天保养一次", "{x}的保养频次"],
        ),
        _r3(
            "intv.plan",
            "train",
            [
                "the planned maintenance interval for {x}",
                "the scheduled service cycle of {x}",
                "the required maintenance timing for {x}",
            ],
            ["{x}的计划保养时间间隔", "{x}的定检周期", "{x}规定的维护时间"],
        ),
        _r3(
            "intv.r3",
            "eval",
            ["the wait until {x} needs its next tune-up", "how long {x} can go before a checkup"],
            ["{x}下一次保养要等多久", "{x}保养的时间间距"],
        ),
    ],
    "works_at": [
        _r3(
            "work.job",
            "train",
            ["the site {x} is employed at", "the plant {x} works for", "the factory where {x} has a job"],
            ["{x}受雇的厂", "{x}工作的厂区", "{x}上班的地方"],
        ),
        _r3(
            "work.base",
            "train",
            [
                "the location {x} is based at",
                "the facility {x} is assigned to",
                "the plant {x} is stationed at",
            ],
            ["{x}驻点的工厂", "{x}被派驻的厂区", "{x}常驻的工厂"],
        ),
        _r3(
            "work.go",
            "train",
            [
                "the site {x} goes to for work",
                "the place where {x} spends the workday",
                "the factory {x} commutes to",
            ],
            ["{x}去上班的工厂", "{x}白天待的厂", "{x}通勤去的工厂"],
        ),
        _r3(
            "work.r3",
            "eval",
            ["the plant that has {x} on its payroll", "the premises {x} punches in at"],
            ["发{x}工资的那个厂", "{x}干活的那个地方"],
        ),
    ],
    "based_in": [
        _r3(
            "ctry.located",
            "train",
            ["the country {x} is located in", "the country of {x}", "the nation where {x} operates"],
            ["{x}所在国", "{x}的国别", "{x}经营所在的国家"],
        ),
        _r3(
            "ctry.hq",
            "train",
            [
                "the country of {x}'s headquarters",
                "the country where {x} has its head office",
                "the home base country of {x}",
            ],
            ["{x}总部所在地的国家", "{x}总公司在的国家", "{x}的大本营所在国"],
        ),
        _r3(
            "ctry.nation",
            "train",
            ["the nationality of {x}", "the country {x} is registered in", "the country {x} belongs to"],
            ["{x}的国籍", "{x}注册所在的国家", "{x}属于的国家"],
        ),
        _r3(
            "ctry.r3",
            "eval",
            ["the flag {x} flies under", "the country {x} calls home"],
            ["{x}出身的国家", "{x}扎根的国家"],
        ),
    ],
    "managed_by": [
        _r3(
            "mgr.plant",
            "train",
            ["the plant manager of {x}", "the general manager of {x}", "the person running {x}"],
            ["{x}的总经理", "运营{x}的负责人", "{x}的主管经理"],
        ),
        _r3(
            "mgr.lead",
            "train",
            ["the leader of {x}", "the person who leads {x}", "the chief of {x}"],
            ["{x}的领导人", "领导{x}的人", "{x}的头儿"],
        ),
        _r3(
            "mgr.resp",
            "train",
            ["the person responsible for {x}", "the director of {x}", "the boss at {x}"],
            ["对{x}负总责的人", "{x}的总监", "{x}的老板"],
        ),
        _r3(
            "mgr.r3",
            "eval",
            ["the one steering operations at {x}", "whoever {x} is run by"],
            ["掌管{x}的人", "{x}当家的人"],
        ),
    ],
}

_Q_RESPLIT3: dict[str, list[Family]] = {
    "located_on_line": [
        _r3(
            "q.line.on",
            "train",
            [
                "What production line is {x} installed on?",
                "Which line does {x} belong to?",
                "On which line is {x}?",
            ],
            ["{x}装在哪条生产线上？", "{x}属于哪条线？", "{x}在几号线？"],
        ),
        _r3(
            "q.line.tell",
            "train",
            [
                "Tell me the line of {x}.",
                "Do you know which line {x} is part of?",
                "Which assembly line includes {x}?",
            ],
            ["告诉我{x}在哪条线。", "你知道{x}是哪条线的吗？", "哪条装配线上有{x}？"],
        ),
        _r3(
            "q.line.set",
            "train",
            ["Where is {x} set up, what line?", "{x} sits on which line?", "Which line was {x} put on?"],
            ["{x}安在哪条线？", "{x}被放到哪条线上了？", "{x}归哪条线？"],
        ),
        _r3(
            "q.line.r3",
            "eval",
            ["What line should I walk to if I want to see {x}?", "{x} is stationed along which line?"],
            ["想看{x}得去哪条线？", "{x}被安排在哪条线体？"],
        ),
    ],
    "line_of_site": [
        _r3(
            "q.site.belong",
            "train",
            [
                "Which factory does {x} belong to?",
                "What plant contains {x}?",
                "Which facility is {x} part of?",
            ],
            ["{x}归哪个工厂？", "哪个厂有{x}？", "{x}是哪个厂区的？"],
        ),
        _r3(
            "q.site.tell",
            "train",
            [
                "Tell me the site of {x}.",
                "In which plant can I find {x}?",
                "Do you know what factory {x} is in?",
            ],
            ["告诉我{x}在哪个厂。", "在哪个工厂能找到{x}？", "你知道{x}在哪个厂吗？"],
        ),
        _r3(
            "q.site.loc",
            "train",
            ["Where is {x}?", "What's the location of {x}?", "Which campus is {x} on?"],
            ["{x}在哪里？", "{x}在哪个园区？", "{x}设在哪个厂？"],
        ),
        _r3(
            "q.site.r3",
            "eval",
            ["In what establishment would I find {x}?", "Which compound houses {x}?"],
            ["{x}坐落在哪个厂？", "{x}位于哪个厂房？"],
        ),
    ],
    "maintained_by": [
        _r3(
            "q.maint.service",
            "train",
            [
                "Who services {x}?",
                "Who is the technician for {x}?",
                "Who is responsible for maintaining {x}?",
            ],
            ["谁负责{x}的保养？", "{x}的维修工是谁？", "谁给{x}做检修？"],
        ),
        _r3(
            "q.maint.contact",
            "train",
            [
                "Who should I contact when {x} fails?",
                "Who's the mechanic on {x}?",
                "Which engineer maintains {x}?",
            ],
            ["{x}故障了联系谁？", "{x}的机修师傅是谁？", "哪个工程师维护{x}？"],
        ),
        _r3(
            "q.maint.fixit",
            "train",
            [
                "Who patches up {x}?",
                "Who gets {x} running again after a fault?",
                "Who's the repair person for {x}?",
            ],
            ["{x}坏了谁来修？", "谁能把{x}修好？", "{x}的维修负责人是谁？"],
        ),
        _r3(
            "q.maint.r3",
            "eval",
            ["Who tends to {x} when it acts up?", "Who's the caretaker of {x}?"],
            ["{x}闹毛病了谁处理？", "{x}平时谁来修修补补？"],
        ),
    ],
    "operated_by": [
        _r3(
            "q.oper.use",
            "train",
            ["Who uses {x}?", "Who works {x}?", "Who is assigned to operate {x}?"],
            ["谁用{x}？", "{x}由谁操作？", "谁被安排开{x}？"],
        ),
        _r3(
            "q.oper.handle",
            "train",
            ["Who handles {x}?", "Who is the operator on {x}?", "Who's running {x} today?"],
            ["谁负责开动{x}？", "{x}的操作工是谁？", "今天谁在开{x}？"],
        ),
        _r3(
            "q.oper.station",
            "train",
            [
                "Which worker is stationed at {x}?",
                "Who runs {x} during production?",
                "Who is on {x} this shift?",
            ],
            ["哪个工人在{x}岗位上？", "生产时谁开{x}？", "这个班谁在{x}上？"],
        ),
        _r3(
            "q.oper.r3",
            "eval",
            ["Whose hands are on {x} during the shift?", "Who feeds and starts {x}?"],
            ["当班时谁摆弄{x}？", "谁在{x}前面开工？"],
        ),
    ],
    "supervised_by": [
        _r3(
            "q.sup.lead",
            "train",
            ["Who is {x}'s team lead?", "Who is {x}'s superior?", "Who is the line manager of {x}?"],
            ["{x}的组长是谁？", "{x}的上司是谁？", "{x}的直属领导是谁？"],
        ),
        _r3(
            "q.sup.under",
            "train",
            ["Who does {x} work under?", "Who gives {x} orders?", "Who does {x} answer to?"],
            ["{x}在谁手下干活？", "谁给{x}布置任务？", "{x}听谁指挥？"],
        ),
        _r3(
            "q.sup.charge",
            "train",
            ["Who is responsible for {x}'s work?", "Who is the foreman over {x}?", "Who manages {x}?"],
            ["谁负责管{x}？", "{x}的工头是谁？", "谁对{x}负责？"],
        ),
        _r3(
            "q.sup.r3",
            "eval",
            ["Who signs off on {x}'s timesheet?", "Who does {x} take direction from?"],
            ["谁给{x}批假？", "{x}听谁安排？"],
        ),
    ],
    "supplied_by": [
        _r3(
            "q.supp.vendor",
            "train",
            ["Who is the vendor of {x}?", "Which company sold us {x}?", "Who is the maker of {x}?"],
            ["{x}的厂商是谁？", "哪家公司卖给我们{x}？", "{x}的卖家是谁？"],
        ),
        _r3(
            "q.supp.produce",
            "train",
            ["Which company produced {x}?", "Who delivered {x}?", "Who is the OEM of {x}?"],
            ["{x}是哪家公司生产的？", "{x}是谁交付的？", "{x}的原厂是哪家？"],
        ),
        _r3(
            "q.supp.source",
            "train",
            ["Which company did we get {x} from?", "Which supplier provides {x}?", "Who manufactured {x}?"],
            ["我们从哪家采购的{x}？", "哪个供应商提供{x}？", "{x}的货源是哪家？"],
        ),
        _r3(
            "q.supp.r3",
            "eval",
            ["Which outfit shipped {x} to us?", "Whose product is {x}?"],
            ["{x}是哪家出品的？", "{x}是谁家的产品？"],
        ),
    ],
    "sensor_of": [
        _r3(
            "q.sens.on",
            "train",
            [
                "Which machine is {x} on?",
                "What machine does {x} belong to?",
                "Which device is {x} installed on?",
            ],
            ["{x}是哪台机器的？", "{x}安装在哪台机器上？", "{x}属于哪台设备？"],
        ),
        _r3(
            "q.sens.monitor",
            "train",
            [
                "Which machine does {x} monitor?",
                "What equipment does {x} measure?",
                "Which machine is {x} watching?",
            ],
            ["{x}监测哪台设备？", "{x}测的是哪台机器？", "{x}监控的是哪个机台？"],
        ),
        _r3(
            "q.sens.fit",
            "train",
            ["Which machine has {x} installed?", "What equipment has {x}?", "Which machine houses {x}?"],
            ["哪台设备带有{x}？", "哪台机器装着{x}？", "哪个机台有{x}？"],
        ),
        _r3(
            "q.sens.r3",
            "eval",
            ["Which machine does {x} keep an eye on?", "What's the host equipment of {x}?"],
            ["{x}盯着哪台设备？", "{x}的宿主设备是哪台？"],
        ),
    ],
    "has_role": [
        _r3(
            "q.role.title",
            "train",
            ["What is {x}'s title?", "What role does {x} have?", "What is the official position of {x}?"],
            ["{x}的头衔是什么？", "{x}是什么身份？", "{x}的正式职位是什么？"],
        ),
        _r3(
            "q.role.work",
            "train",
            ["What work does {x} do?", "What is {x}'s function?", "What job does {x} have?"],
            ["{x}做什么工作？", "{x}负责什么职能？", "{x}的工作是什么？"],
        ),
        _r3(
            "q.role.occup",
            "train",
            ["What is {x}'s occupation?", "What is {x} employed as?", "What's the profession of {x}?"],
            ["{x}的职业是什么？", "{x}是什么工种？", "{x}受雇做什么？"],
        ),
        _r3(
            "q.role.r3",
            "eval",
            ["What kind of work is {x} hired for?", "What's {x}'s trade?"],
            ["{x}干的是哪一行？", "{x}的本职是什么？"],
        ),
    ],
    "maintenance_interval": [
        _r3(
            "q.intv.period",
            "train",
            [
                "What is the service period of {x}?",
                "What's the maintenance cycle of {x}?",
                "What's the interval between services of {x}?",
            ],
            ["{x}的维护周期是多少？", "{x}的保养间隔是多久？", "{x}两次保养隔多久？"],
        ),
        _r3(
            "q.intv.freq",
            "train",
            [
                "How regularly is {x} serviced?",
                "How many days between maintenance for {x}?",
                "How frequently does {x} need service?",
            ],
            ["{x}多少天保养一次？", "{x}的检修频率是多少？", "{x}多久需要维护一次？"],
        ),
        _r3(
            "q.intv.plan",
            "train",
            [
                "How long is the scheduled service cycle of {x}?",
                "What's the planned maintenance interval for {x}?",
                "How often must {x} be maintained?",
            ],
            ["{x}的定检周期是多久？", "{x}规定多长时间维护一次？", "{x}的计划保养间隔是多少？"],
        ),
        _r3(
            "q.intv.r3",
            "eval",
            [
                "How long can {x} go before a checkup?",
                "How long until {x} needs its next tune-up, typically?",
            ],
            ["{x}下一次保养一般要等多久？", "{x}保养的时间间距是多少？"],
        ),
    ],
    "works_at": [
        _r3(
            "q.work.employ",
            "train",
            [
                "Which site is {x} employed at?",
                "Which plant does {x} work for?",
                "Where does {x} have a job?",
            ],
            ["{x}受雇于哪个厂？", "{x}在哪个厂区工作？", "{x}在哪上班？"],
        ),
        _r3(
            "q.work.base",
            "train",
            [
                "Where is {x} stationed?",
                "Which facility is {x} assigned to?",
                "Which plant is {x} posted at?",
            ],
            ["{x}驻点在哪个工厂？", "{x}被派到哪个厂区？", "{x}常驻哪个工厂？"],
        ),
        _r3(
            "q.work.go",
            "train",
            [
                "Where does {x} go to work?",
                "Which factory does {x} commute to?",
                "Where does {x} spend the workday?",
            ],
            ["{x}去哪个工厂上班？", "{x}每天通勤去哪个厂？", "{x}白天待在哪个厂？"],
        ),
        _r3(
            "q.work.r3",
            "eval",
            ["Which plant has {x} on its payroll?", "Where does {x} punch in?"],
            ["哪个厂给{x}发工资？", "{x}在哪个地方干活？"],
        ),
    ],
    "based_in": [
        _r3(
            "q.ctry.located",
            "train",
            [
                "What country is {x} located in?",
                "Which nation does {x} operate from?",
                "What's the country of {x}?",
            ],
            ["{x}在哪个国家？", "{x}的国别是什么？", "{x}在哪国经营？"],
        ),
        _r3(
            "q.ctry.hq",
            "train",
            [
                "In which country does {x} have its head office?",
                "Where is {x}'s headquarters, which country?",
                "Which country is {x}'s home base?",
            ],
            ["{x}总公司在哪个国家？", "{x}的总部设在哪国？", "{x}的大本营在哪个国家？"],
        ),
        _r3(
            "q.ctry.nation",
            "train",
            [
                "What nationality is {x}?",
                "Which country is {x} registered in?",
                "Which country does {x} belong to?",
            ],
            ["{x}是什么国籍？", "{x}在哪个国家注册？", "{x}属于哪个国家？"],
        ),
        _r3(
            "q.ctry.r3",
            "eval",
            ["What flag does {x} fly under?", "Which country does {x} call home?"],
            ["{x}出身哪个国家？", "{x}扎根在哪国？"],
        ),
    ],
    "managed_by": [
        _r3(
            "q.mgr.plant",
            "train",
            ["Who is the plant manager of {x}?", "Who is the general manager of {x}?", "Who is running {x}?"],
            ["{x}的总经理是谁？", "谁在运营{x}？", "{x}的主管经理是谁？"],
        ),
        _r3(
            "q.mgr.lead",
            "train",
            ["Who leads {x}?", "Who is the chief of {x}?", "Who is the leader at {x}?"],
            ["谁领导{x}？", "{x}的头儿是谁？", "{x}的领导人是谁？"],
        ),
        _r3(
            "q.mgr.resp",
            "train",
            ["Who is responsible for {x}?", "Who is the director of {x}?", "Who is the boss at {x}?"],
            ["谁对{x}负总责？", "{x}的总监是谁？", "{x}的老板是谁？"],
        ),
        _r3(
            "q.mgr.r3",
            "eval",
            ["Who is steering operations at {x}?", "Whom is {x} run by?"],
            ["谁掌管{x}？", "{x}谁当家？"],
        ),
    ],
}

_IMPLICIT_RESPLIT3: dict[tuple[str, tuple[str, ...]], list[Family]] = {
    ("machine", ("located_on_line", "line_of_site")): [
        _r3(
            "imp.m.site.r3",
            "eval",
            ["Which compound is {x} housed in?", "{x} is found in what establishment?"],
            ["{x}坐落在哪个厂？", "{x}位于哪个厂房？"],
        ),
    ],
    ("machine", ("supplied_by", "based_in")): [
        _r3(
            "imp.m.ctry.r3",
            "eval",
            ["{x} was shipped from which country originally?", "What country does {x} call home?"],
            ["{x}原产于哪个国家？", "{x}出身哪个国家？"],
        ),
    ],
    ("sensor", ("sensor_of", "located_on_line")): [
        _r3(
            "imp.s.line.r3",
            "eval",
            ["What line should I walk to if I want to see {x}?", "{x} is stationed along which line?"],
            ["想看{x}得去哪条线？", "{x}被安排在哪条线体？"],
        ),
    ],
    ("sensor", ("sensor_of", "maintained_by")): [
        _r3(
            "imp.s.maint.r3",
            "eval",
            ["Who tends to {x} when it acts up?", "Who's the caretaker of {x}?"],
            ["{x}闹毛病了谁处理？", "{x}平时谁来修修补补？"],
        ),
    ],
    ("sensor", ("sensor_of", "located_on_line", "line_of_site")): [
        _r3(
            "imp.s.site.r3",
            "eval",
            ["Which compound houses {x}?", "In what establishment would I find {x}?"],
            ["{x}坐落在哪个厂？", "{x}位于哪个厂房？"],
        ),
    ],
    ("machine", ("located_on_line", "line_of_site", "managed_by")): [
        _r3(
            "imp.m.mgr.r3",
            "eval",
            ["Who is steering operations at the place {x} is in?", "Whom is {x}'s plant run by?"],
            ["谁掌管{x}所在的厂？", "{x}那个厂谁当家？"],
        ),
    ],
    ("person", ("works_at", "managed_by")): [
        _r3(
            "imp.p.mgr.r3",
            "eval",
            ["Who is steering operations where {x} punches in?", "Whom is {x}'s workplace run by?"],
            ["谁掌管{x}上班的地方？", "给{x}发工资的那个厂谁当家？"],
        ),
    ],
}


def _extend(table: dict[K, list[Family]], added: dict[K, list[Family]]) -> None:
    """Append a round's families to the tables' lists (one home for every round)."""
    for key, fams in added.items():
        table[key].extend(fams)


_extend(NP_FAMILIES, _NP_RESPLIT3)
_extend(Q_FAMILIES, _Q_RESPLIT3)
_extend(IMPLICIT_FAMILIES, _IMPLICIT_RESPLIT3)

# ---------------------------------------------------------------------------------------------
# Round 4 (2026-12-06, later the same session): more *training* families only — two more noun
# phrase and two more question families per relation, two more frames per answer kind and one
# more distractor — written after the first re-split 3 runs had been measured (their aggregate
# numbers only: no item and no error of reasoning_eval_v3.jsonl was read). The evaluation
# families are untouched, so the frozen set stays v3 (``build_split("eval", resplit=4)`` is v3,
# a test checks it); ``split_at(3)`` leaves these out, for the same-run comparison.
# ---------------------------------------------------------------------------------------------


def _r4(fid: str, en: list[str], zh: list[str]) -> Family:
    return _f(fid, "train", en, zh, 4, "")


_NP_ROUND4: dict[str, list[Family]] = {
    "located_on_line": [
        _r4(
            "line.r4.part",
            ["the line that {x} is a part of", "the production line {x} sits in", "the line hosting {x}"],
            ["{x}所在的那一条线", "{x}挂靠的生产线", "承载{x}的产线"],
        ),
        _r4(
            "line.r4.terse",
            ["{x}'s line", "the line for {x}", "the line number of {x}"],
            ["{x}的产线", "{x}那条线", "{x}的线号"],
        ),
    ],
    "line_of_site": [
        _r4(
            "site.r4.part",
            ["the plant that {x} is a part of", "the factory site of {x}", "the facility hosting {x}"],
            ["{x}所在的厂", "{x}所属的厂区", "{x}所在的那座工厂"],
        ),
        _r4(
            "site.r4.terse",
            ["{x}'s plant", "the factory for {x}", "the site {x} is located at"],
            ["{x}的工厂", "{x}那个厂", "{x}的厂区位置"],
        ),
    ],
    "maintained_by": [
        _r4(
            "maint.r4.upkeep",
            [
                "the person in charge of upkeep for {x}",
                "the person doing maintenance on {x}",
                "the fixer of {x}",
            ],
            ["负责{x}日常维护的人", "给{x}做维护的人", "管{x}维修的人"],
        ),
        _r4(
            "maint.r4.terse",
            ["{x}'s maintainer", "{x}'s repair technician", "the service tech for {x}"],
            ["{x}的维护员", "{x}的检修员", "{x}的维修技师"],
        ),
    ],
    "operated_by": [
        _r4(
            "oper.r4.control",
            ["the person controlling {x}", "the person who runs {x} on the floor", "the one operating {x}"],
            ["控制{x}的人", "在车间里开{x}的人", "正在操作{x}的人"],
        ),
        _r4(
            "oper.r4.terse",
            ["{x}'s operator", "{x}'s machine operator", "the driver of {x}"],
            ["{x}的操作人员", "{x}的开机人", "{x}的司机"],
        ),
    ],
    "supervised_by": [
        _r4(
            "sup.r4.manage",
            ["the person who manages {x}", "the manager {x} has", "the one supervising {x}'s work"],
            ["管理{x}的领导", "{x}的管理者", "监督{x}工作的人"],
        ),
        _r4(
            "sup.r4.terse",
            ["{x}'s boss", "{x}'s supervisor", "{x}'s direct manager"],
            ["{x}的老板", "{x}的主管人", "{x}的直接上级"],
        ),
    ],
    "supplied_by": [
        _r4(
            "supp.r4.from",
            ["the company {x} was bought from", "the supplier that sells {x}", "the firm behind {x}"],
            ["购买{x}的那家公司", "销售{x}的供应商", "{x}背后的厂家"],
        ),
        _r4(
            "supp.r4.terse",
            ["{x}'s supplier", "{x}'s manufacturer", "{x}'s vendor company"],
            ["{x}的供货商", "{x}的生产商", "{x}的供货公司"],
        ),
    ],
    "sensor_of": [
        _r4(
            "sens.r4.attached",
            [
                "the machine {x} is fixed to",
                "the equipment where {x} is mounted",
                "the machine that carries {x}",
            ],
            ["固定{x}的设备", "{x}安在的设备", "带着{x}的那台机器"],
        ),
        _r4(
            "sens.r4.terse",
            ["{x}'s machine", "the equipment of {x}", "the device hosting {x}"],
            ["{x}的设备", "{x}对应的机器", "{x}所在的机台"],
        ),
    ],
    "has_role": [
        _r4(
            "role.r4.position",
            ["the position {x} works in", "the role {x} plays at work", "the job {x} is doing"],
            ["{x}担任的岗位", "{x}在单位的角色", "{x}现在做的工作"],
        ),
        _r4(
            "role.r4.terse",
            ["{x}'s role", "{x}'s job title", "{x}'s position"],
            ["{x}的职务", "{x}的工作岗位", "{x}的职称"],
        ),
    ],
    "maintenance_interval": [
        _r4(
            "intv.r4.every",
            [
                "how many days between services for {x}",
                "the time between maintenance jobs on {x}",
                "how long {x} runs between services",
            ],
            ["{x}每次保养隔几天", "{x}两次维护间隔多少天", "{x}运行多久保养一次"],
        ),
        _r4(
            "intv.r4.terse",
            ["{x}'s maintenance interval", "{x}'s service interval", "the upkeep frequency of {x}"],
            ["{x}的维护间隔", "{x}的保养频率", "{x}的维修周期"],
        ),
    ],
    "works_at": [
        _r4(
            "work.r4.employ",
            ["the plant where {x} is working", "the facility that employs {x}", "the site {x} is working at"],
            ["{x}正在工作的工厂", "雇用{x}的工厂", "{x}所在的工作单位"],
        ),
        _r4(
            "work.r4.terse",
            ["{x}'s workplace", "{x}'s plant", "{x}'s work site"],
            ["{x}的单位", "{x}的厂", "{x}的工作地"],
        ),
    ],
    "based_in": [
        _r4(
            "ctry.r4.origin",
            [
                "the country {x} is from",
                "the country where {x} is headquartered",
                "the nation {x} comes from",
            ],
            ["{x}来自的那个国家", "{x}总部所在的国家", "{x}所属的国家"],
        ),
        _r4(
            "ctry.r4.terse",
            ["{x}'s country", "{x}'s home country", "the country of origin of {x}"],
            ["{x}的国家", "{x}的母国", "{x}的原产国"],
        ),
    ],
    "managed_by": [
        _r4(
            "mgr.r4.run",
            ["the person who manages {x}", "the manager running {x}", "the head of operations at {x}"],
            ["管理{x}的那个人", "负责运营{x}的经理", "{x}的运营负责人"],
        ),
        _r4(
            "mgr.r4.terse",
            ["{x}'s manager", "{x}'s plant head", "{x}'s director"],
            ["{x}的管理者", "{x}的厂领导", "{x}的主任"],
        ),
    ],
}

_Q_ROUND4: dict[str, list[Family]] = {
    "located_on_line": [
        _r4(
            "q.line.r4.ask",
            ["Can you tell me which line {x} is on?", "I need the line of {x}.", "What line is {x} part of?"],
            ["能告诉我{x}在哪条线吗？", "我想知道{x}的产线。", "{x}是哪条线上的？"],
        ),
        _r4(
            "q.line.r4.terse",
            ["{x} line?", "Line of {x}?", "Which line, {x}?"],
            ["{x}哪条线？", "{x}的产线？", "{x}在哪条线"],
        ),
    ],
    "line_of_site": [
        _r4(
            "q.site.r4.ask",
            [
                "Can you tell me which plant {x} is at?",
                "I need the site of {x}.",
                "What factory is {x} part of?",
            ],
            ["能告诉我{x}在哪个厂吗？", "我想知道{x}的厂区。", "{x}是哪个工厂的？"],
        ),
        _r4(
            "q.site.r4.terse",
            ["{x} plant?", "Site of {x}?", "Which factory, {x}?"],
            ["{x}哪个厂？", "{x}的工厂？", "{x}在哪个厂区"],
        ),
    ],
    "maintained_by": [
        _r4(
            "q.maint.r4.ask",
            [
                "Can you tell me who maintains {x}?",
                "I need whoever services {x}.",
                "Who does the upkeep on {x}?",
            ],
            ["能告诉我谁维护{x}吗？", "我要找{x}的维修人员。", "{x}的日常维护谁负责？"],
        ),
        _r4(
            "q.maint.r4.terse",
            ["{x} maintainer?", "Repair person for {x}?", "Who fixes {x}, anyone?"],
            ["{x}谁维修？", "{x}的维护员？", "{x}找谁修"],
        ),
    ],
    "operated_by": [
        _r4(
            "q.oper.r4.ask",
            ["Can you tell me who operates {x}?", "I need the operator of {x}.", "Who controls {x}?"],
            ["能告诉我谁操作{x}吗？", "我要找{x}的操作员。", "{x}由谁控制？"],
        ),
        _r4(
            "q.oper.r4.terse",
            ["{x} operator?", "Who's on {x}?", "Operator for {x}?"],
            ["{x}谁在操作？", "{x}的操作员？", "{x}谁开"],
        ),
    ],
    "supervised_by": [
        _r4(
            "q.sup.r4.ask",
            ["Can you tell me who {x} reports to?", "I need {x}'s supervisor.", "Who is {x}'s manager?"],
            ["能告诉我{x}的上级是谁吗？", "我要找{x}的主管。", "{x}归哪个领导管？"],
        ),
        _r4(
            "q.sup.r4.terse",
            ["{x}'s boss?", "Supervisor of {x}?", "Who's over {x}?"],
            ["{x}的领导？", "{x}上面是谁？", "{x}的主管是谁"],
        ),
    ],
    "supplied_by": [
        _r4(
            "q.supp.r4.ask",
            ["Can you tell me who supplied {x}?", "I need the manufacturer of {x}.", "Who sold us {x}?"],
            ["能告诉我{x}是谁供应的吗？", "我想知道{x}的生产商。", "{x}是谁卖给我们的？"],
        ),
        _r4(
            "q.supp.r4.terse",
            ["{x} supplier?", "Maker of {x}?", "Who built {x}?"],
            ["{x}供应商？", "{x}谁生产的？", "{x}的厂家是哪个"],
        ),
    ],
    "sensor_of": [
        _r4(
            "q.sens.r4.ask",
            [
                "Can you tell me which machine {x} is on?",
                "I need the machine of {x}.",
                "Where is {x} mounted?",
            ],
            ["能告诉我{x}装在哪台机器上吗？", "我想知道{x}对应的设备。", "{x}安在哪？"],
        ),
        _r4(
            "q.sens.r4.terse",
            ["{x} machine?", "Machine for {x}?", "Which unit has {x}?"],
            ["{x}哪台设备？", "{x}的机器？", "{x}在哪台机上"],
        ),
    ],
    "has_role": [
        _r4(
            "q.role.r4.ask",
            ["Can you tell me what {x} does?", "I need the role of {x}.", "What is {x}'s position here?"],
            ["能告诉我{x}是做什么的吗？", "我想知道{x}的职务。", "{x}在这里担任什么？"],
        ),
        _r4(
            "q.role.r4.terse",
            ["{x}'s job?", "Role of {x}?", "What does {x} work as?"],
            ["{x}的岗位？", "{x}是做什么的", "{x}什么职务？"],
        ),
    ],
    "maintenance_interval": [
        _r4(
            "q.intv.r4.ask",
            [
                "Can you tell me how often {x} is serviced?",
                "I need the service interval of {x}.",
                "Every how many days is {x} maintained?",
            ],
            ["能告诉我{x}多久保养一次吗？", "我想知道{x}的维护间隔。", "{x}每隔几天维护？"],
        ),
        _r4(
            "q.intv.r4.terse",
            ["{x} service interval?", "How often for {x}?", "Maintenance cycle of {x}?"],
            ["{x}多久保养？", "{x}的保养周期？", "{x}几天一保养"],
        ),
    ],
    "works_at": [
        _r4(
            "q.work.r4.ask",
            [
                "Can you tell me where {x} works?",
                "I need the workplace of {x}.",
                "Which site is {x} working at?",
            ],
            ["能告诉我{x}在哪工作吗？", "我想知道{x}的单位。", "{x}在哪个厂干活？"],
        ),
        _r4(
            "q.work.r4.terse",
            ["{x}'s plant?", "Workplace of {x}?", "Where's {x} working?"],
            ["{x}在哪上班？", "{x}的单位？", "{x}哪个厂的"],
        ),
    ],
    "based_in": [
        _r4(
            "q.ctry.r4.ask",
            [
                "Can you tell me where {x} is based?",
                "I need the country of {x}.",
                "Which country does {x} come from?",
            ],
            ["能告诉我{x}是哪国的吗？", "我想知道{x}的国家。", "{x}来自哪个国家？"],
        ),
        _r4(
            "q.ctry.r4.terse",
            ["{x} country?", "Home country of {x}?", "Where's {x} from?"],
            ["{x}哪国的？", "{x}的国家？", "{x}是哪里的公司"],
        ),
    ],
    "managed_by": [
        _r4(
            "q.mgr.r4.ask",
            ["Can you tell me who manages {x}?", "I need the manager of {x}.", "Who is in charge at {x}?"],
            ["能告诉我{x}谁管理吗？", "我想知道{x}的经理。", "{x}谁负责？"],
        ),
        _r4(
            "q.mgr.r4.terse",
            ["{x} manager?", "Head of {x}?", "Who runs {x}, the manager?"],
            ["{x}的经理？", "{x}谁是头？", "{x}的负责人是谁"],
        ),
    ],
}

_FRAMES_ROUND4: dict[str, list[Family]] = {
    "person": [
        _r4(
            "fr.p.r4.ask",
            ["Could you tell me {np}?", "I'm looking for {np}.", "Who would be {np}?"],
            ["能告诉我{np}吗？", "我在找{np}。", "谁会是{np}？"],
        ),
        _r4(
            "fr.p.r4.terse",
            ["{np}?", "{np} — who is it?", "Need to reach {np}."],
            ["{np}？", "{np}是谁啊", "要联系{np}。"],
        ),
    ],
    "other": [
        _r4(
            "fr.o.r4.ask",
            ["Could you tell me {np}?", "I'm looking for {np}.", "What would be {np}?"],
            ["能告诉我{np}吗？", "我在找{np}。", "{np}会是哪个？"],
        ),
        _r4(
            "fr.o.r4.terse",
            ["{np}?", "{np} — which is it?", "Need {np}."],
            ["{np}？", "{np}是哪个啊", "需要知道{np}。"],
        ),
    ],
}

_DISTRACTORS_ROUND4: list[Family] = [
    _r4(
        "dis.r4.ticket",
        ["Ticket 4471, priority 2: {q}", "{q} Asking before the 8 am meeting."],
        ["工单4471，优先级2：{q}", "{q}早上8点开会前要知道。"],
    ),
]

_extend(NP_FAMILIES, _NP_ROUND4)
_extend(Q_FAMILIES, _Q_ROUND4)
_extend(FRAMES, _FRAMES_ROUND4)
DISTRACTORS.extend(_DISTRACTORS_ROUND4)
