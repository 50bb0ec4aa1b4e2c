"""An answer's text -> the valid (context, true, false) triples; malformed parts are counted, never raised."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from fortifai_bench.kr.llm.prompt import MAX_QUESTIONS

_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\n?\s*```\s*$", re.S)
_ALIASES = {"true": ("true", "sentence_true"), "false": ("false", "sentence_false")}


@dataclass
class Parsed:
    """The valid (context, true, false) triples of one answer, and what was skipped and why."""

    items: list[tuple[str, str, str]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n


def _loads_lenient(content: str) -> Any:
    """JSON, tolerating the markdown fence and the chatter around it that chat models add."""
    text = content.strip()
    match = _FENCE.match(text)
    if match:
        text = match.group(1).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            return json.loads(text[start : end + 1])
        raise


def _field(obj: dict, name: str) -> Any:
    for key in _ALIASES.get(name, (name,)):
        if key in obj:
            return obj[key]
    return None


def parse_answer(content: str | None) -> Parsed:
    """Valid triples from an answer; malformed parts are counted under `skipped`, never raised."""
    out = Parsed()
    if content is None or not content.strip():
        out.skip("empty_answer")
        return out
    try:
        data = _loads_lenient(content)
    except (json.JSONDecodeError, RecursionError):
        out.skip("not_json")
        return out
    # {"questions": [...]} as asked; a bare list (the authors' file format) is accepted too.
    items = data.get("questions") if isinstance(data, dict) else data
    if not isinstance(items, list):
        out.skip("wrong_shape")
        return out
    seen = set()
    for item in items:
        if not isinstance(item, dict):
            out.skip("wrong_shape")
            continue
        values = [_field(item, k) for k in ("context", "true", "false")]
        if not all(isinstance(v, str) for v in values):
            out.skip("wrong_shape")
            continue
        # Stored without a leading space: scoring inserts the delimiter (contract 2).
        context, true, false = (" ".join(v.split()) for v in values)
        if not (context and true and false):
            out.skip("empty_field")
        elif true == false:
            out.skip("true_equals_false")
        elif (context, true, false) in seen:
            out.skip("duplicate")
        elif len(out.items) >= MAX_QUESTIONS:
            out.skip("beyond_max")
        else:
            seen.add((context, true, false))
            out.items.append((context, true, false))
    return out
