"""The loss short names (``ce``, ``tce:0.9``, ``focal:2``): the one table of them, and the hint for a misspelt one.

`SHORT_NAMES` is a `fortifai_bench.registry.Registry` of lazy "module:Class" targets, as every other table of
names in the package; any other spec is a user's ``module:Name``, imported by `user_import`.
"""

from __future__ import annotations

from fortifai_bench.errors import did_you_mean
from fortifai_bench.registry import Registry

SHORT_NAMES = Registry("loss short name", {
    "ce": "fortifai_bench.losses.ce:CE",
    "tce": "fortifai_bench.losses.tce:TCE",
    "focal": "fortifai_bench.losses.focal:Focal",
}, sort=False)
VALUE_KEYWORDS = {"tce": "gamma", "focal": "gamma"}  # the keyword that "name:value" sets (ce takes no value)


def short_name_hint(spec: str) -> str:
    """`; did you mean tce:0.9?` for a misspelt short name (`tec:0.9`), else ""."""
    name, sep, value = spec.partition(":")
    hint = did_you_mean(name.lower(), SHORT_NAMES)
    return hint[:-1] + f"{sep}{value}?" if hint else ""
