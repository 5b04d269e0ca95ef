"""Slot values for the templates: plant entities, places, people, numbers and units.

Each slot is a function ``(rng) -> str`` per language. Entities are generated (type + tag +
number), so machines such as "press P-12" or "烤箱OV-3" come in many forms and ids.
"""

from __future__ import annotations

import random
from collections.abc import Callable

SlotFn = Callable[[random.Random], str]

# (English type, Chinese type, tag prefix)
MACHINE_TYPES: list[tuple[str, str, str]] = [
    ("press", "压力机", "P"),
    ("oven", "烤箱", "OV"),
    ("conveyor", "传送带", "C"),
    ("pump", "泵", "PU"),
    ("compressor", "空压机", "CP"),
    ("mixer", "搅拌机", "MX"),
    ("boiler", "锅炉", "B"),
    ("robot arm", "机械臂", "R"),
    ("chiller", "冷水机", "CH"),
    ("lathe", "车床", "L"),
    ("kiln", "窑炉", "K"),
    ("extruder", "挤出机", "EX"),
    ("packer", "包装机", "PK"),
    ("filler", "灌装机", "F"),
    ("welder", "焊机", "W"),
    ("furnace", "熔炉", "FN"),
    ("CNC mill", "数控铣床", "M"),
    ("injection molder", "注塑机", "IM"),
    ("dryer", "烘干机", "D"),
    ("cooling tower", "冷却塔", "CT"),
]
SENSOR_TYPES: list[tuple[str, str, str]] = [
    ("temperature sensor", "温度传感器", "TS"),
    ("pressure sensor", "压力变送器", "PT"),
    ("flow meter", "流量计", "FM"),
    ("vibration sensor", "振动传感器", "VS"),
    ("level sensor", "液位计", "LS"),
    ("humidity sensor", "湿度传感器", "HS"),
    ("power meter", "电表", "PM"),
    ("thermocouple", "热电偶", "TC"),
]
PEOPLE_EN = [
    "Li Wei",
    "Zhang Min",
    "Anna Schmidt",
    "Tom Baker",
    "Maria Lopez",
    "Wang Fang",
    "John Smith",
    "Chen Jie",
    "Priya Patel",
    "Jonas Weber",
    "Liu Yang",
    "Sara Kim",
    "Ahmed Khan",
    "Zhao Lei",
    "Emma Brown",
    "Sun Li",
    "Carlos Ruiz",
    "Yuki Tanaka",
    "Olga Petrova",
    "Zhou Qiang",
]
PEOPLE_ZH = [
    "李伟",
    "张敏",
    "王芳",
    "陈杰",
    "刘洋",
    "赵磊",
    "孙丽",
    "周强",
    "吴静",
    "郑浩",
    "黄涛",
    "林娜",
    "马超",
    "胡军",
    "高燕",
    "Anna",
    "Tom",
    "老王",
    "小李",
    "张工",
]
CITIES_EN = [
    "Shanghai",
    "Beijing",
    "Shenzhen",
    "Hangzhou",
    "Chengdu",
    "Wuhan",
    "Guangzhou",
    "Nanjing",
    "Munich",
    "Berlin",
    "London",
    "Tokyo",
    "Singapore",
    "Chicago",
    "Sao Paulo",
    "Dubai",
    "Sydney",
    "Stuttgart",
    "Osaka",
    "Seoul",
    "Paris",
    "Detroit",
    "Mumbai",
    "Xi'an",
    "Suzhou",
]
CITIES_ZH = [
    "上海",
    "北京",
    "深圳",
    "杭州",
    "成都",
    "武汉",
    "广州",
    "南京",
    "西安",
    "重庆",
    "苏州",
    "天津",
    "青岛",
    "厦门",
    "长沙",
    "慕尼黑",
    "东京",
    "新加坡",
    "柏林",
    "伦敦",
    "首尔",
    "大阪",
    "郑州",
    "合肥",
]
REGIONS_EN = [
    "Bavaria",
    "Guangdong",
    "the Yangtze delta",
    "Southeast Asia",
    "northern China",
    "the Ruhr area",
    "Sichuan",
    "California",
    "the Pearl River delta",
    "Scandinavia",
    "the Midwest",
    "Yunnan",
]
REGIONS_ZH = [
    "广东",
    "长三角",
    "东南亚",
    "华北",
    "四川",
    "云南",
    "珠三角",
    "东北",
    "新疆",
    "海南",
    "江浙",
    "华南",
]
WHEN_EN = [
    "today",
    "tomorrow",
    "this weekend",
    "next week",
    "tonight",
    "on Friday",
    "this afternoon",
    "",
    "now",
]
WHEN_ZH = ["今天", "明天", "这周末", "下周", "今晚", "周五", "下午", "后天", ""]
MONTHS_EN = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
MONTHS_ZH = [
    "一月",
    "二月",
    "三月",
    "四月",
    "五月",
    "六月",
    "七月",
    "八月",
    "九月",
    "十月",
    "十一月",
    "十二月",
]
UNIT_PAIRS_EN = [
    ("celsius", "fahrenheit"),
    ("°C", "°F"),
    ("kelvin", "celsius"),
    ("meters", "feet"),
    ("inches", "centimeters"),
    ("km", "miles"),
    ("kilograms", "pounds"),
    ("kg", "lb"),
    ("ounces", "grams"),
    ("bar", "psi"),
    ("kPa", "psi"),
    ("liters", "gallons"),
    ("ml", "fluid ounces"),
    ("km/h", "m/s"),
    ("mph", "km/h"),
    ("kWh", "joules"),
    ("calories", "kJ"),
    ("hours", "minutes"),
    ("seconds", "milliseconds"),
    ("tons", "kilograms"),
    ("cubic meters", "liters"),
    ("newton meters", "foot-pounds"),
    ("mm", "inches"),
    ("MPa", "bar"),
    ("BTU", "kWh"),
]
UNIT_PAIRS_ZH = [
    ("摄氏度", "华氏度"),
    ("°C", "°F"),
    ("开尔文", "摄氏度"),
    ("米", "英尺"),
    ("英寸", "厘米"),
    ("公里", "英里"),
    ("千克", "磅"),
    ("公斤", "磅"),
    ("盎司", "克"),
    ("巴", "psi"),
    ("千帕", "巴"),
    ("升", "加仑"),
    ("公里每小时", "米每秒"),
    ("千瓦时", "焦耳"),
    ("卡路里", "千焦"),
    ("小时", "分钟"),
    ("秒", "毫秒"),
    ("吨", "公斤"),
    ("立方米", "升"),
    ("牛米", "磅英尺"),
    ("毫米", "英寸"),
    ("兆帕", "巴"),
    ("kg", "lb"),
    ("km", "英里"),
]
TERMS_EN = [
    "OEE",
    "MTBF",
    "MTTR",
    "takt time",
    "SPC",
    "kaizen",
    "poka-yoke",
    "5S",
    "cycle time",
    "Cpk",
    "lean manufacturing",
    "root cause analysis",
    "FMEA",
    "preventive maintenance",
    "a PID loop",
    "HACCP",
]
TERMS_ZH = [
    "OEE",
    "MTBF",
    "平均故障间隔时间",
    "节拍时间",
    "统计过程控制",
    "改善",
    "防错",
    "5S",
    "生产周期",
    "精益生产",
    "根本原因分析",
    "失效模式分析",
    "预防性维护",
    "设备综合效率",
    "PID控制",
    "Cpk",
]
AREAS_EN = [
    "the paint shop",
    "the welding area",
    "the chemical store",
    "the clean room",
    "the warehouse",
    "the boiler room",
]
AREAS_ZH = ["喷漆车间", "焊接区", "化学品仓库", "洁净室", "仓库", "锅炉房"]
TASKS_EN = [
    "line changeover",
    "forklift inspection",
    "boiler start-up",
    "confined space entry",
    "hot work permits",
    "spill cleanup",
    "mold changes",
    "daily press checks",
    "shift handover",
]
TASKS_ZH = [
    "换线",
    "叉车检查",
    "锅炉启动",
    "有限空间作业",
    "动火作业许可",
    "泄漏清理",
    "换模",
    "日常点检",
    "交接班",
]
LETTERS = "ABCDEFGH"


def _num(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.5:
        return str(rng.randint(2, 999))
    if r < 0.8:
        return str(rng.randint(1000, 99999))
    return f"{rng.uniform(0.1, 999):.{rng.randint(1, 2)}f}"


def _tag(rng: random.Random, prefix: str) -> str:
    n = rng.randint(1, 60)
    sep = rng.choice(["-", "-", "-", "", " "])
    return f"{prefix}{sep}{n}"


def _machine_en(rng: random.Random) -> str:
    en, _, prefix = rng.choice(MACHINE_TYPES)
    tag = _tag(rng, prefix)
    return rng.choice(
        [f"{en} {tag}", f"{en} {tag}", f"the {en} {tag}", tag, f"{en} #{rng.randint(1, 40)}", f"{tag} {en}"]
    )


def _machine_zh(rng: random.Random) -> str:
    _, zh, prefix = rng.choice(MACHINE_TYPES)
    tag = _tag(rng, prefix)
    return rng.choice(
        [f"{zh}{tag}", f"{zh}{tag}", f"{tag}{zh}", f"{rng.randint(1, 40)}号{zh}", tag, f"{tag}号{zh}"]
    )


def _sensor_en(rng: random.Random) -> str:
    en, _, prefix = rng.choice(SENSOR_TYPES)
    tag = _tag(rng, prefix)
    return rng.choice([f"{en} {tag}", f"the {en} {tag}", f"sensor {tag}", tag])


def _sensor_zh(rng: random.Random) -> str:
    _, zh, prefix = rng.choice(SENSOR_TYPES)
    tag = _tag(rng, prefix)
    return rng.choice([f"{zh}{tag}", f"{tag}{zh}", f"传感器{tag}", tag])


def _valve_en(rng: random.Random) -> str:
    n = rng.randint(1, 80)
    return rng.choice(
        [f"valve V-{n}", f"V-{n}", f"the inlet valve V-{n}", f"steam valve SV-{n}", f"drain valve DV-{n}"]
    )


def _valve_zh(rng: random.Random) -> str:
    n = rng.randint(1, 80)
    return rng.choice([f"阀门V-{n}", f"进水阀V-{n}", f"蒸汽阀SV-{n}", f"V-{n}号阀", f"排水阀DV-{n}"])


def _line_en(rng: random.Random) -> str:
    n, letter = rng.randint(1, 12), rng.choice(LETTERS)
    return rng.choice(
        [
            f"line {n}",
            f"Line {letter}",
            f"assembly line {n}",
            f"packaging line {n}",
            f"bottling line {letter}",
            "the paint line",
            f"line {letter}{n}",
            f"production line {n}",
        ]
    )


def _line_zh(rng: random.Random) -> str:
    n, letter = rng.randint(1, 12), rng.choice(LETTERS)
    return rng.choice(
        [
            f"{n}号线",
            f"{letter}线",
            f"装配{n}线",
            f"包装线{n}",
            f"灌装{letter}线",
            "涂装线",
            f"{n}号产线",
            f"生产线{letter}{n}",
        ]
    )


def _site_en(rng: random.Random) -> str:
    n, letter = rng.randint(1, 9), rng.choice(LETTERS)
    return rng.choice(
        [
            "the Shenzhen plant",
            "site North",
            f"Building {n}",
            f"Plant {n}",
            "the Suzhou factory",
            f"Hall {letter}",
            "the Munich site",
        ]
    )


def _site_zh(rng: random.Random) -> str:
    n, letter = rng.randint(1, 9), rng.choice(LETTERS)
    return rng.choice(
        ["深圳工厂", "北区厂区", f"{n}号厂房", f"{n}号工厂", "苏州工厂", f"{letter}车间", "南厂区"]
    )


def _code(rng: random.Random) -> str:
    n = rng.randint(1, 999)
    return rng.choice([f"E{n}", f"A-{n}", f"F{n:03d}", f"0x{n:04X}", f"ERR {n}", f"E-{n}"])


def _choice(values: list[str]) -> SlotFn:
    return lambda rng: rng.choice(values)


def _mtype(lang: str) -> SlotFn:
    idx = 0 if lang == "en" else 1
    return lambda rng: rng.choice(MACHINE_TYPES)[idx]


def _machine_id(rng: random.Random) -> str:
    return _tag(rng, rng.choice(MACHINE_TYPES)[2])


_COMMON: dict[str, SlotFn] = {
    "a": _num,
    "b": _num,
    "c": _num,
    "d": _num,
    "v": _num,
    "n": lambda rng: str(rng.randint(2, 6)),
    "d1": lambda rng: str(rng.randint(5, 9)),
    "pct": lambda rng: str(rng.choice([5, 10, 12, 15, 20, 25, 30, 33, 40, 50, 60, 75, 80, 90])),
    "t": lambda rng: str(rng.randint(20, 260)),
    "n2": lambda rng: str(rng.randint(10, 500)),
    "n3": lambda rng: str(rng.randint(300, 3000)),
    "code": _code,
    "machine_id": _machine_id,
}

SLOTS: dict[str, dict[str, SlotFn]] = {
    "en": {
        **_COMMON,
        "machine": _machine_en,
        "sensor": _sensor_en,
        "valve": _valve_en,
        "line": _line_en,
        "site": _site_en,
        "person": _choice(PEOPLE_EN),
        "city": _choice(CITIES_EN),
        "region": _choice(REGIONS_EN),
        "when": _choice(WHEN_EN),
        "month": _choice(MONTHS_EN),
        "mtype": _mtype("en"),
        "term": _choice(TERMS_EN),
        "term2": _choice(TERMS_EN),
        "area": _choice(AREAS_EN),
        "task": _choice(TASKS_EN),
    },
    "zh": {
        **_COMMON,
        "machine": _machine_zh,
        "sensor": _sensor_zh,
        "valve": _valve_zh,
        "line": _line_zh,
        "site": _site_zh,
        "person": _choice(PEOPLE_ZH),
        "city": _choice(CITIES_ZH),
        "region": _choice(REGIONS_ZH),
        "when": _choice(WHEN_ZH),
        "month": _choice(MONTHS_ZH),
        "mtype": _mtype("zh"),
        "term": _choice(TERMS_ZH),
        "term2": _choice(TERMS_ZH),
        "area": _choice(AREAS_ZH),
        "task": _choice(TASKS_ZH),
    },
}
UNIT_PAIRS: dict[str, list[tuple[str, str]]] = {"en": UNIT_PAIRS_EN, "zh": UNIT_PAIRS_ZH}
