"""What the running ComfyUI supports, found from its own classes (never from its version string).

Newer ComfyUI releases added optional schema fields (``search_aliases`` on ``io.Schema``, ``advanced`` on inputs)
that 0.3.75 rejects as unknown keyword arguments. The pack asks for them through :func:`build`, which passes such a
field only when the host's class declares it, so one node definition serves every supported host.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any

# Fields the pack may ask for that some supported hosts lack; any other keyword always goes through, so a typo
# still fails loudly.
OPTIONAL_FIELDS = frozenset({"search_aliases", "advanced"})

# What people type when looking for this pack's nodes; each node adds its own words (see ``aliases``).
PACK_ALIASES = ("hunyuan image 2.1", "hunyuanimage", "hunyuan 2.1", "hy21")


@functools.cache
def accepted_fields(cls: type) -> frozenset[str]:
    """The keyword fields ``cls`` takes: a dataclass's fields, else its constructor's named parameters."""
    if dataclasses.is_dataclass(cls):
        return frozenset(f.name for f in dataclasses.fields(cls) if f.init)
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # no introspectable signature: assume nothing optional
        return frozenset()
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(p.name for p in parameters if p.kind in named)


def supports(cls: type, field: str) -> bool:
    """Whether this host's ``cls`` (``io.Schema``, ``io.Int.Input``, ...) knows the keyword ``field``."""
    return field in accepted_fields(cls)


def build(cls: type, *args: Any, **kwargs: Any) -> Any:
    """``cls(*args, **kwargs)`` without the optional fields this host's ``cls`` does not know."""
    dropped = {name for name in OPTIONAL_FIELDS & kwargs.keys() if not supports(cls, name)}
    return cls(*args, **{k: v for k, v in kwargs.items() if k not in dropped})


def aliases(*words: str) -> list[str]:
    """Search aliases for one node: the pack's names plus ``words`` (what the node is called elsewhere)."""
    return [*PACK_ALIASES, *words]


def show_text(node_id: str | None, text: str) -> None:
    """Show ``text`` on the node in the web UI (ComfyUI's progress text, as its own image-size nodes do); a no-op
    where the host has no UI server (tests importing the nodes, API-only embeddings)."""
    if node_id is None:
        return
    try:
        from server import PromptServer  # ComfyUI's own module, present when the server runs
    except ImportError:
        return
    instance = getattr(PromptServer, "instance", None)
    if instance is not None and hasattr(instance, "send_progress_text"):
        instance.send_progress_text(text, node_id)
