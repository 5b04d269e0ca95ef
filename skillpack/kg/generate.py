"""Deterministic generator of the plant knowledge graph shipped as ``plant_graph.json``.

Run ``python -m skillpack.kg.generate`` to rewrite the shipped file; ``tests/skillpack`` checks
that the shipped file equals what the generator produces from the recorded seed, so edge and
cloud always see the same graph.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

SEED = 20240601
SCHEMA = "autoglm.plant_graph/1"

SITES = [
    # key, code, EN, ZH, city, people style
    ("suzhou", "SZ", "Suzhou Plant", "苏州工厂", "Suzhou", "zh"),
    ("shenzhen", "SH", "Shenzhen Plant", "深圳工厂", "Shenzhen", "zh"),
    ("stuttgart", "ST", "Stuttgart Plant", "斯图加特工厂", "Stuttgart", "de"),
]
LINE_TYPES = [
    ("press", "Press Line", "冲压线", ["press", "press", "robot", "conveyor", "compressor"]),
    ("paint", "Paint Line", "涂装线", ["robot", "oven", "oven", "conveyor", "chiller"]),
    ("machining", "Machining Line", "机加工线", ["cnc", "cnc", "cnc", "robot", "compressor"]),
    ("assembly", "Assembly Line", "装配线", ["robot", "robot", "conveyor", "conveyor", "press"]),
]
MACHINE_KINDS: dict[str, dict[str, Any]] = {
    "press": {
        "prefix": "PR",
        "en": "hydraulic press",
        "zh": "液压机",
        "alias_en": ["press"],
        "alias_zh": ["压机", "冲压机"],
        "sensors": ["pressure", "temperature"],
        "suppliers": ["hanwei", "lombardi"],
        "intervals": ["monthly", "every_500h"],
    },
    "robot": {
        "prefix": "RB",
        "en": "industrial robot",
        "zh": "工业机器人",
        "alias_en": ["robot"],
        "alias_zh": ["机器人"],
        "sensors": ["current", "vibration"],
        "suppliers": ["sakura", "hanil", "zhongding"],
        "intervals": ["quarterly", "annually"],
    },
    "conveyor": {
        "prefix": "CV",
        "en": "conveyor",
        "zh": "输送带",
        "alias_en": ["belt conveyor"],
        "alias_zh": ["输送机", "传送带"],
        "sensors": ["vibration", "current"],
        "suppliers": ["greatlakes", "zhongding"],
        "intervals": ["weekly", "monthly"],
    },
    "compressor": {
        "prefix": "CP",
        "en": "air compressor",
        "zh": "空压机",
        "alias_en": ["compressor"],
        "alias_zh": ["空气压缩机"],
        "sensors": ["pressure", "temperature"],
        "suppliers": ["apex", "keller"],
        "intervals": ["monthly", "every_500h"],
    },
    "oven": {
        "prefix": "OV",
        "en": "curing oven",
        "zh": "固化烘箱",
        "alias_en": ["oven"],
        "alias_zh": ["烘箱", "烤箱"],
        "sensors": ["temperature", "current"],
        "suppliers": ["nordtherm", "dongfang"],
        "intervals": ["semiannually", "quarterly"],
    },
    "chiller": {
        "prefix": "CH",
        "en": "chiller",
        "zh": "冷水机",
        "alias_en": ["water chiller"],
        "alias_zh": ["冷却机"],
        "sensors": ["temperature", "flow"],
        "suppliers": ["dongfang", "apex"],
        "intervals": ["quarterly", "semiannually"],
    },
    "cnc": {
        "prefix": "CN",
        "en": "CNC machining centre",
        "zh": "数控加工中心",
        "alias_en": ["cnc", "machining center"],
        "alias_zh": ["数控机床", "加工中心"],
        "sensors": ["vibration", "temperature"],
        "suppliers": ["keller", "hanil"],
        "intervals": ["monthly", "quarterly"],
    },
}
SENSOR_KINDS = {
    "temperature": ("TS", "temperature sensor", "温度传感器", "°C"),
    "pressure": ("PS", "pressure sensor", "压力传感器", "bar"),
    "vibration": ("VS", "vibration sensor", "振动传感器", "mm/s"),
    "current": ("IS", "current sensor", "电流传感器", "A"),
    "flow": ("FS", "flow sensor", "流量传感器", "L/min"),
}
ROLES = [
    ("site_manager", "site manager", "厂长"),
    ("line_supervisor", "line supervisor", "产线主管"),
    ("maintenance_technician", "maintenance technician", "维修技术员"),
    ("machine_operator", "machine operator", "设备操作员"),
    ("quality_engineer", "quality engineer", "质量工程师"),
    ("safety_officer", "safety officer", "安全主任"),
]
SUPPLIERS = [
    ("hanwei", "Hanwei Hydraulics", "汉威液压", "cn"),
    ("lombardi", "Lombardi Presse", "隆巴迪压机", "it"),
    ("sakura", "Sakura Robotics", "樱花机器人", "jp"),
    ("hanil", "Hanil Precision", "韩一精密", "kr"),
    ("zhongding", "Zhongding Automation", "中鼎自动化", "cn"),
    ("greatlakes", "Great Lakes Conveyor", "大湖输送", "us"),
    ("apex", "Apex Air Systems", "顶峰空气系统", "us"),
    ("keller", "Keller Antriebstechnik", "凯勒传动", "de"),
    ("nordtherm", "Nordtherm Industrieofen", "诺德热工", "de"),
    ("dongfang", "Dongfang Thermal", "东方热能", "cn"),
    ("vogel", "Vogel Messtechnik", "福格尔测量", "de"),
    ("minato", "Minato Sensors", "湊传感器", "jp"),
]
COUNTRIES = [
    ("cn", "China", "中国"),
    ("it", "Italy", "意大利"),
    ("jp", "Japan", "日本"),
    ("kr", "South Korea", "韩国"),
    ("us", "United States", "美国"),
    ("de", "Germany", "德国"),
]
INTERVALS = [
    ("weekly", "weekly", "每周", 7),
    ("monthly", "monthly", "每月", 30),
    ("quarterly", "quarterly", "每季度", 91),
    ("semiannually", "every six months", "每半年", 182),
    ("annually", "annually", "每年", 365),
    ("every_500h", "every 500 operating hours", "每运行500小时", 21),
]
ZH_SURNAMES = [
    ("Wang", "王"),
    ("Li", "李"),
    ("Zhang", "张"),
    ("Liu", "刘"),
    ("Chen", "陈"),
    ("Yang", "杨"),
    ("Zhao", "赵"),
    ("Huang", "黄"),
    ("Zhou", "周"),
    ("Wu", "吴"),
    ("Xu", "徐"),
    ("Sun", "孙"),
    ("Ma", "马"),
    ("Zhu", "朱"),
    ("Hu", "胡"),
    ("Guo", "郭"),
    ("He", "何"),
    ("Lin", "林"),
    ("Gao", "高"),
    ("Luo", "罗"),
]
ZH_GIVEN = [
    ("Wei", "伟"),
    ("Fang", "芳"),
    ("Min", "敏"),
    ("Jing", "静"),
    ("Lei", "磊"),
    ("Qiang", "强"),
    ("Yang", "洋"),
    ("Yan", "艳"),
    ("Jie", "杰"),
    ("Tao", "涛"),
    ("Ming", "明"),
    ("Chao", "超"),
    ("Hua", "华"),
    ("Jun", "军"),
    ("Ping", "平"),
    ("Gang", "刚"),
    ("Hui", "慧"),
    ("Bo", "博"),
    ("Xin", "欣"),
    ("Hao", "浩"),
]
DE_FIRST = [
    "Anna",
    "Jonas",
    "Lukas",
    "Lena",
    "Felix",
    "Marie",
    "Paul",
    "Sophie",
    "Leon",
    "Mia",
    "Max",
    "Laura",
    "Tobias",
    "Julia",
    "Stefan",
    "Katrin",
    "Jan",
    "Eva",
    "Niklas",
    "Sarah",
]
DE_LAST = [
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Neumann",
    "Schwarz",
    "Braun",
    "Zimmermann",
    "Krüger",
    "Hartmann",
]
DE_ZH = {
    "Anna": "安娜",
    "Jonas": "约纳斯",
    "Lukas": "卢卡斯",
    "Lena": "莱娜",
    "Felix": "费利克斯",
    "Marie": "玛丽",
    "Paul": "保罗",
    "Sophie": "索菲",
    "Leon": "莱昂",
    "Mia": "米娅",
    "Max": "马克斯",
    "Laura": "劳拉",
    "Tobias": "托比亚斯",
    "Julia": "尤利娅",
    "Stefan": "斯特凡",
    "Katrin": "卡特琳",
    "Jan": "扬",
    "Eva": "伊娃",
    "Niklas": "尼克拉斯",
    "Sarah": "萨拉",
    "Müller": "穆勒",
    "Schmidt": "施密特",
    "Schneider": "施耐德",
    "Fischer": "菲舍尔",
    "Weber": "韦伯",
    "Meyer": "迈尔",
    "Wagner": "瓦格纳",
    "Becker": "贝克尔",
    "Schulz": "舒尔茨",
    "Hoffmann": "霍夫曼",
    "Koch": "科赫",
    "Richter": "里希特",
    "Klein": "克莱因",
    "Wolf": "沃尔夫",
    "Neumann": "诺伊曼",
    "Schwarz": "施瓦茨",
    "Braun": "布劳恩",
    "Zimmermann": "齐默尔曼",
    "Krüger": "克吕格尔",
    "Hartmann": "哈特曼",
}
LINE_NUM_ZH = "一二三四五六七八九"


def generate(seed: int = SEED) -> dict[str, Any]:
    rng = random.Random(seed)
    entities: list[dict[str, Any]] = []
    triples: list[list[str]] = []
    used_names: set[str] = set()

    def ent(eid: str, etype: str, name: str, name_zh: str, aliases: list[str], **attrs: Any) -> str:
        entities.append(
            {
                "id": eid,
                "type": etype,
                "name": name,
                "name_zh": name_zh,
                "aliases": sorted(set(aliases) - {name, name_zh}),
                "attrs": attrs,
            }
        )
        return eid

    def rel(h: str, r: str, t: str) -> None:
        triples.append([h, r, t])

    for key, en, zh, _ in [(c[0], c[1], c[2], None) for c in COUNTRIES]:
        ent(f"country:{key}", "country", en, zh, [])
    for key, en, zh, days in INTERVALS:
        ent(f"interval:{key}", "interval", en, zh, [], days=days)
    for key, en, zh in ROLES:
        ent(f"role:{key}", "role", en, zh, [en + "s"])
    for key, en, zh, country in SUPPLIERS:
        eid = ent(f"supplier:{key}", "supplier", en, zh, [en.split()[0]])
        rel(eid, "based_in", f"country:{country}")

    def person(style: str, role: str, site_id: str) -> str:
        while True:
            if style == "zh":
                (sn, sz), (gn, gz) = rng.choice(ZH_SURNAMES), rng.choice(ZH_GIVEN)
                name, name_zh, aliases = f"{sn} {gn}", f"{sz}{gz}", [f"{gn} {sn}"]
            else:
                first, last = rng.choice(DE_FIRST), rng.choice(DE_LAST)
                name, name_zh, aliases = f"{first} {last}", f"{DE_ZH[first]}·{DE_ZH[last]}", []
            if name not in used_names and name_zh not in used_names:
                used_names.update({name, name_zh})
                break
        slug = name.lower().replace(" ", "-").replace("ü", "ue")
        pid = ent(f"person:{slug}", "person", name, name_zh, aliases)
        rel(pid, "has_role", f"role:{role}")
        rel(pid, "works_at", site_id)
        return pid

    for s_no, (skey, scode, sen, szh, city, style) in enumerate(SITES, start=1):
        site_id = ent(
            f"site:{skey}",
            "site",
            sen,
            szh,
            [city, szh[:-2], f"{city} site", f"{city} factory", f"{szh[:-2]}厂", f"{city} plant", scode],
            city=city,
            code=scode,
        )
        manager = person(style, "site_manager", site_id)
        rel(site_id, "managed_by", manager)
        for role in ("quality_engineer", "safety_officer"):
            rel(person(style, role, site_id), "supervised_by", manager)
        for l_no, (ltype, len_, lzh, kinds) in enumerate(LINE_TYPES, start=1):
            code = f"{scode}-L{l_no}"
            line_id = ent(
                f"line:{code}",
                "line",
                f"{sen.split()[0]} Line {l_no}",
                f"{szh[:-2]}{l_no}号线",
                [
                    code,
                    f"{sen.split()[0]} {len_}",
                    f"{szh[:-2]}{lzh}",
                    f"{szh[:-2]}{LINE_NUM_ZH[l_no - 1]}号线",
                    f"{sen.split()[0]} L{l_no}",
                ],
                number=l_no,
                line_type=ltype,
            )
            rel(line_id, "line_of_site", site_id)
            sup = person(style, "line_supervisor", site_id)
            rel(line_id, "supervised_by", sup)
            rel(sup, "supervised_by", manager)
            techs = [person(style, "maintenance_technician", site_id) for _ in range(2)]
            ops = [person(style, "machine_operator", site_id) for _ in range(2)]
            for p in techs + ops:
                rel(p, "supervised_by", sup)
            for m_no, kind in enumerate(kinds, start=1):
                spec = MACHINE_KINDS[kind]
                mcode = f"{spec['prefix']}-{s_no}{l_no}{m_no}"
                digits = mcode.split("-")[1]
                mid = ent(
                    f"machine:{mcode}",
                    "machine",
                    f"{spec['en']} {mcode}",
                    f"{spec['zh']}{mcode}",
                    [
                        mcode,
                        mcode.replace("-", ""),
                        mcode.replace("-", " "),
                        *(f"{a} {mcode}" for a in spec["alias_en"]),
                        *(f"{a}{mcode}" for a in spec["alias_zh"]),
                    ],
                    code=mcode,
                    kind=kind,
                    installed=2012 + rng.randrange(12),
                )
                rel(mid, "located_on_line", line_id)
                rel(mid, "maintained_by", rng.choice(techs))
                rel(mid, "operated_by", rng.choice(ops))
                rel(mid, "supplied_by", f"supplier:{rng.choice(spec['suppliers'])}")
                rel(mid, "maintenance_interval", f"interval:{rng.choice(spec['intervals'])}")
                for j, skind in enumerate(spec["sensors"], start=1):
                    sprefix, sen_name, szh_name, unit = SENSOR_KINDS[skind]
                    scode_ = f"{sprefix}-{digits}{j}"
                    sid = ent(
                        f"sensor:{scode_}",
                        "sensor",
                        f"{sen_name} {scode_}",
                        f"{szh_name}{scode_}",
                        [scode_, scode_.replace("-", ""), scode_.replace("-", " "), f"sensor {scode_}"],
                        code=scode_,
                        kind=skind,
                        unit=unit,
                    )
                    rel(sid, "sensor_of", mid)
                    rel(mid, "has_sensor", sid)
    return {"schema": SCHEMA, "seed": seed, "entities": entities, "triples": triples}


def dumps(graph: dict[str, Any]) -> str:
    head = {k: v for k, v in graph.items() if k not in ("entities", "triples")}
    lines = ["{", *(f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()), ' "entities": [']
    lines.append(",\n".join("  " + json.dumps(e, ensure_ascii=False) for e in graph["entities"]))
    lines.append(' ],\n "triples": [')
    lines.append(",\n".join("  " + json.dumps(t, ensure_ascii=False) for t in graph["triples"]))
    lines.append(" ]\n}\n")
    return "\n".join(lines)


SHIPPED = Path(__file__).with_name("plant_graph.json")


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    out = Path(args[0]) if args else SHIPPED
    out.write_text(dumps(generate()), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
