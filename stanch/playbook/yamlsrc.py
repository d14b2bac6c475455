"""YAML with line numbers: parse once, keep the node tree, and turn a field path back into
the line it came from. Shared by the playbook loader and the inventory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from stanch.playbook.errors import LocatedError, describe, format_path


@dataclass(frozen=True)
class YamlDocument:
    """A parsed file: the plain data and the node tree it came from."""

    file: str
    data: Any
    root: yaml.Node | None

    def line(self, loc: Sequence[str | int]) -> int:
        """The line of the deepest node ``loc`` reaches (1-based). Keys point at their key."""
        if self.root is None:
            return 1
        node: yaml.Node = self.root
        line = node.start_mark.line + 1
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                pair = next(
                    (
                        (k, v)
                        for k, v in node.value
                        if isinstance(k, yaml.ScalarNode) and k.value == str(part)
                    ),
                    None,
                )
                if pair is None:
                    break
                line = pair[0].start_mark.line + 1
                node = pair[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    break
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line

    def error(self, loc: Sequence[str | int], message: str) -> LocatedError:
        return LocatedError(self.file, self.line(loc), format_path(loc), message)

    def validation_errors(
        self, err: ValidationError, prefix: Sequence[str | int] = ()
    ) -> list[LocatedError]:
        """Every pydantic error as a located one, in the words of :func:`describe`."""
        out = []
        for e in err.errors():
            loc = (*prefix, *e["loc"])
            out.append(self.error(loc, describe(e)))
        return out


def parse_yaml(text: str, file: str) -> tuple[YamlDocument | None, list[LocatedError]]:
    """Parse one YAML document; syntax errors and duplicate keys come back located."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or exc.context or "unparseable"
        return None, [LocatedError(file, line, "", f"invalid YAML: {problem}")]
    except yaml.YAMLError as exc:
        return None, [LocatedError(file, 1, "", f"invalid YAML: {exc}")]
    doc = YamlDocument(file=file, data=data, root=root)
    return doc, _duplicate_keys(doc, root, ())


def read_yaml(path: Path) -> tuple[YamlDocument | None, list[LocatedError]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [LocatedError(str(path), 1, "", f"cannot read: {exc}")]
    return parse_yaml(text, str(path))


def _duplicate_keys(
    doc: YamlDocument, node: yaml.Node | None, loc: tuple[str | int, ...]
) -> list[LocatedError]:
    # PyYAML keeps the last of two equal keys silently; an author meant one of them.
    errors: list[LocatedError] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k.value)
            if key in seen:
                errors.append(
                    LocatedError(doc.file, k.start_mark.line + 1, format_path((*loc, key)),
                                 "duplicate key")
                )
            seen.add(key)
            errors.extend(_duplicate_keys(doc, v, (*loc, key)))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            errors.extend(_duplicate_keys(doc, item, (*loc, i)))
    return errors
