"""Text Stanch accepts: Unicode that every store and log can hold, without NUL.

JSON may carry an unpaired UTF-16 surrogate (``"\\ud800"``): valid JSON, but not Unicode,
so it cannot be encoded as UTF-8, hashed, sealed or stored. A NUL cannot live in a
PostgreSQL ``text`` column and truncates strings in C tools. Both are refused where text
enters Stanch, with the place named, instead of failing somewhere downstream.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """What makes ``text`` unacceptable, or None when it is fine."""
    found = _SURROGATE.search(text)
    if found:
        return (f"holds an unpaired UTF-16 surrogate (U+{ord(found.group()):04X}) at "
                f"character {found.start()}: send valid Unicode")
    nul = text.find("\x00")
    if nul >= 0:
        return f"holds a NUL character at character {nul}: remove it"
    return None


def find_bad_text(doc: Any) -> tuple[str, str] | None:
    """The first string (key or value) in a JSON document that is not acceptable text, as
    (JSON path, problem), or None. Iterative, so any nesting depth is safe."""
    stack: list[tuple[str, Any]] = [("$", doc)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            problem = text_problem(node)
            if problem:
                return path, problem
        elif isinstance(node, dict):
            for key, value in reversed(node.items()):
                problem = text_problem(key) if isinstance(key, str) else None
                if problem:
                    return f"{path} (a key)", problem
                stack.append((f"{path}.{key}", value))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(node))))
    return None
