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


@dataclass(frozen=True)
class Family:
    id: str
    split: str  # "train" | "eval"
    en: tuple[str, ...]
    zh: tuple[str, ...]


def _f(fid: str, split: str, en: list[str], zh: list[str]) -> Family:
    return Family(fid, split, tuple(en), tuple(zh))


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
            "eval",
            ["the line that {x} lives on", "the assembly run {x} is part of"],
            ["{x}待的那条线", "{x}归属的那条流水线"],
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
            "eval",
            ["the location {x} is part of", "the works that {x} is at"],
            ["{x}隶属的基地", "{x}落在的那个园区"],
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
            "eval",
            ["the person who keeps {x} in good shape", "the one who looks after upkeep of {x}"],
            ["照看{x}的师傅", "给{x}做保养的师傅"],
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
            "eval",
            ["the person at the controls of {x}", "the one who drives {x} day to day"],
            ["在{x}上干活的人", "守着{x}的员工"],
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
            "eval",
            ["the person above {x}", "the one who oversees {x}"],
            ["{x}的顶头上司", "带{x}的那个头儿"],
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
            "eval",
            ["the firm we bought {x} from", "the brand behind {x}"],
            ["{x}是从哪家买的那家公司", "{x}的出厂品牌"],
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
            "eval",
            ["the unit that {x} sits on", "the asset {x} is wired into"],
            ["{x}挂在的那台设备", "{x}接在哪台机器上的那台机器"],
        ),
    ],
    "has_role": [
        _f("role.formal", "train", ["the role of {x}", "the job title of {x}"], ["{x}的职位", "{x}的岗位"]),
        _f("role.job", "train", ["the position of {x}", "the job {x} holds"], ["{x}的角色", "{x}担任的职务"]),
        _f(
            "role.does",
            "eval",
            ["what {x} does for a living here", "the line of work of {x}"],
            ["{x}是干什么的", "{x}平时干的活"],
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
            "eval",
            ["the gap between upkeep visits for {x}", "the cadence of preventive work on {x}"],
            ["{x}隔多少天要保养", "{x}的定期保养节奏"],
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
            "eval",
            ["the site {x} clocks in at", "the place {x} reports for duty"],
            ["{x}打卡的地方", "{x}每天去的那个厂"],
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
            "eval",
            ["the homeland of {x}", "where in the world {x} is from"],
            ["{x}的老家在哪个国", "{x}属于哪国的企业"],
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
            "eval",
            ["the top person at {x}", "who calls the shots at {x}"],
            ["{x}的一把手", "{x}说了算的人"],
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
            "eval",
            ["Where on the floor would I find {x}, which line?", "{x} runs on what line?"],
            ["去哪条线能找到{x}？", "{x}放在哪条流水线？"],
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
            "eval",
            ["Where is {x} located, which works?", "{x} is at which location?"],
            ["{x}落在哪个基地？", "{x}是哪个园区的？"],
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
            "eval",
            ["Who keeps {x} in working order?", "Who takes care of {x}'s upkeep?"],
            ["{x}坏了找谁修？", "谁照看{x}？"],
        ),
    ],
    "operated_by": [
        _f("q.oper.who", "train", ["Who operates {x}?", "Who runs {x}?"], ["谁操作{x}？", "{x}是谁在开？"]),
        _f(
            "q.oper.shift",
            "eval",
            ["Who is at the controls of {x}?", "Who mans {x}?"],
            ["谁在{x}上干活？", "{x}平时谁守着？"],
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
            "eval",
            ["Who oversees {x}?", "Who is above {x}?"],
            ["谁带{x}？", "{x}的顶头上司是谁？"],
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
            "eval",
            ["Which firm did we buy {x} from?", "What brand is {x}?"],
            ["{x}是从哪家买的？", "{x}是什么牌子的？"],
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
            "eval",
            ["{x} is wired into which unit?", "What asset does {x} sit on?"],
            ["{x}挂在哪台设备上？", "{x}接的是哪台机器？"],
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
            "eval",
            ["What does {x} do here?", "What's {x}'s line of work?"],
            ["{x}是干什么的？", "{x}平时干什么活？"],
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
            "eval",
            ["How long between upkeep visits for {x}?", "At what cadence does {x} get preventive work?"],
            ["{x}隔多少天要保养？", "{x}多长时间要做一次定期保养？"],
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
            "eval",
            ["Where does {x} clock in?", "Which site does {x} report to each day?"],
            ["{x}在哪儿打卡？", "{x}每天去哪个厂？"],
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
            "eval",
            ["What's the homeland of {x}?", "Where in the world is {x} from?"],
            ["{x}老家是哪国？", "{x}是哪国企业？"],
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
            "eval",
            ["Who calls the shots at {x}?", "Who is the top person at {x}?"],
            ["{x}谁说了算？", "{x}的一把手是谁？"],
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
            "eval",
            ["{x} is at which location?", "Where is {x}, which works?"],
            ["{x}落在哪个基地？", "{x}放在哪个园区？"],
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
            "eval",
            ["Where in the world does {x} come from?", "What's the homeland of {x}?"],
            ["{x}老家是哪国？", "{x}是进口自哪国的？"],
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
            "eval",
            ["Where on the floor is {x}, which line?", "{x} runs on what line?"],
            ["去哪条线能找到{x}？", "{x}放在哪条流水线？"],
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
            "eval",
            ["Who keeps {x} in working order?", "Who takes care of {x}'s upkeep?"],
            ["{x}坏了找谁修？", "谁照看{x}？"],
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
            "eval",
            ["{x} is at which location?", "Where is {x}, which works?"],
            ["{x}落在哪个基地？", "{x}放在哪个园区？"],
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
            "eval",
            ["Who calls the shots at the place where {x} is?", "Who is the top person where {x} sits?"],
            ["{x}那边谁说了算？", "{x}所在地方的一把手是谁？"],
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
            "eval",
            ["Who calls the shots where {x} clocks in?", "Who is the top person at {x}'s workplace?"],
            ["{x}那个厂谁说了算？", "{x}单位的一把手是谁？"],
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
