"""Entity types and relation types of the plant knowledge graph, with the words people use for
them in English and Chinese (used by the question generator, the lexical hop scorer and the
cloud/edge prompts)."""

from __future__ import annotations

from dataclasses import dataclass

ENTITY_TYPES = ("site", "line", "machine", "sensor", "person", "role", "supplier", "country", "interval")


@dataclass(frozen=True)
class RelationType:
    name: str
    head: tuple[str, ...]  # entity types it leaves from
    tail: str
    functional: bool  # at most one tail per head (questions only follow functional relations)
    description: str
    cues_en: tuple[
        str, ...
    ]  # word prefixes/phrases that signal this relation in a question (matched at a word start)
    cues_zh: tuple[str, ...]


RELATIONS: dict[str, RelationType] = {
    r.name: r
    for r in (
        RelationType(
            "located_on_line",
            ("machine",),
            "line",
            True,
            "the production line a machine is installed on",
            ("line", "lines"),
            ("产线", "生产线", "线"),
        ),
        RelationType(
            "line_of_site",
            ("line",),
            "site",
            True,
            "the site (plant) a production line belongs to",
            ("site", "plant", "factory", "facility", "location"),
            ("工厂", "厂区", "基地", "厂"),
        ),
        RelationType(
            "maintained_by",
            ("machine",),
            "person",
            True,
            "the technician responsible for a machine's maintenance",
            ("maintain", "maintenance", "service", "technician", "repair", "looks after", "fixes"),
            (
                "维护",
                "保养",
                "检修",
                "维修",
                "技术员",
                "保养负责人",
                "维护负责人",
                "负责维护",
                "负责保养",
                "负责检修",
            ),
        ),
        RelationType(
            "operated_by",
            ("machine",),
            "person",
            True,
            "the operator who runs a machine",
            ("operat", "runs", "run by", "running", "runs"),
            ("操作", "操作员", "操作工", "负责操作", "开"),
        ),
        RelationType(
            "supervised_by",
            ("person", "line"),
            "person",
            True,
            "the supervisor of a person or of a production line",
            ("supervis", "boss", "reports to", "report to", "in charge of", "manager of", "lead", "superior"),
            ("主管", "上级", "领导", "负责", "管理", "谁管", "归谁管"),
        ),
        RelationType(
            "supplied_by",
            ("machine",),
            "supplier",
            True,
            "the vendor that supplied a machine",
            ("suppl", "vendor", "manufacturer", "made", "built", "bought from", "maker"),
            ("供应商", "供应", "厂商", "制造商", "生产厂家", "厂家", "采购"),
        ),
        RelationType(
            "sensor_of",
            ("sensor",),
            "machine",
            True,
            "the machine a sensor is mounted on",
            ("machine", "mounted", "installed on", "attached", "fitted", "equipment", "carrying"),
            ("设备", "机器", "机台", "安装", "装在"),
        ),
        RelationType(
            "has_sensor",
            ("machine",),
            "sensor",
            False,
            "the sensors mounted on a machine",
            ("sensor", "sensors"),
            ("传感器",),
        ),
        RelationType(
            "has_role",
            ("person",),
            "role",
            True,
            "a person's job role",
            ("role", "job", "position", "title", "do for a living"),
            ("职位", "岗位", "角色", "职务", "工作角色"),
        ),
        RelationType(
            "maintenance_interval",
            ("machine",),
            "interval",
            True,
            "how often a machine gets preventive maintenance",
            (
                "how often",
                "how frequently",
                "interval",
                "frequen",
                "schedule",
                "maintenance interval",
                "maintenance frequency",
                "service schedule",
                "service interval",
            ),
            (
                "多久",
                "周期",
                "频率",
                "频次",
                "间隔",
                "多长时间",
                "保养周期",
                "维护频率",
                "保养频次",
                "检修间隔",
                "维护周期",
                "保养间隔",
            ),
        ),
        RelationType(
            "works_at",
            ("person",),
            "site",
            True,
            "the site a person works at",
            ("works", "work at", "working at", "workplace", "employ", "based at"),
            ("工作", "上班", "任职", "工作地点"),
        ),
        RelationType(
            "based_in",
            ("supplier",),
            "country",
            True,
            "the country a supplier is based in",
            ("countr", "based in", "headquarter", "comes from", "nation"),
            ("国家", "总部", "来自", "哪国", "国"),
        ),
        RelationType(
            "managed_by",
            ("site",),
            "person",
            True,
            "the manager of a site",
            ("manag", "manager of", "head of", "director", "in charge of", "runs"),
            ("厂长", "经理", "管理", "负责人", "负责", "谁管"),
        ),
    )
}

INVERSE_FOR_DISPLAY = {"has_sensor": "sensor_of"}


def relation(name: str) -> RelationType:
    return RELATIONS[name]


def path_refusal(start_type: str, relations: tuple[str, ...] | list[str], max_hops: int = 3) -> str | None:
    """Why ``relations`` is no path of this schema from an entity of ``start_type`` (None when it is):
    an unknown entity type or relation, a relation that does not leave the type reached so far, an
    empty path or one longer than ``max_hops``. Receivers of path priors (the cloud hub, the edge)
    refuse anything else."""
    if start_type not in ENTITY_TYPES:
        return f"unknown entity type {start_type[:40]!r}"
    if not 1 <= len(relations) <= max_hops:
        return f"a path has 1 to {max_hops} relations, not {len(relations)}"
    current = start_type
    for name in relations:
        rel = RELATIONS.get(name)
        if rel is None:
            return f"unknown relation {name[:40]!r}"
        if current not in rel.head:
            return f"relation {name!r} does not leave a {current}"
        current = rel.tail
    return None
