"""Training data for the router: the bundled generator (EN + ZH) and user JSONL files.

Public names: :class:`Example`, :func:`default_splits` (train/val/test split by template),
:func:`load_jsonl` (validated user data), :func:`write_jsonl`, :func:`dataset_sha256`.
"""

from cloud.data.example import Example, detect_lang
from cloud.data.generator import SplitSpec, assign_templates, dataset_sha256, default_splits
from cloud.data.jsonl import load_jsonl, routes_of, write_jsonl

__all__ = [
    "Example",
    "SplitSpec",
    "assign_templates",
    "dataset_sha256",
    "default_splits",
    "detect_lang",
    "load_jsonl",
    "routes_of",
    "write_jsonl",
]
