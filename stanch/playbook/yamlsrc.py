"""YAML with line numbers: parse once, keep the node tree, and turn a field path back into
the line it came from. Shared by the playbook loader and the inventory."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

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
        self, err: ValidationError, model: type[BaseModel] | None = None
    ) -> list[LocatedError]:
        """Every pydantic error as a located one, in the words of :func:`describe`; an
        unknown field gets a "did you mean" when ``model`` has a close name there."""
        out = []
        for e in err.errors():
            message = describe(e)
            if e["type"] == "extra_forbidden" and model is not None:
                near = _suggest(model, e["loc"])
                message += f" (did you mean {near!r}?)" if near else ""
            out.append(self.error(e["loc"], message))
        return out


# libyaml when PyYAML has it: a few times faster on a large inventory (docs/benchmarks.md).
# A document that does not parse is read again by the pure-Python loader, whose messages the
# errors below quote.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(text: str, loader_cls: Any) -> tuple[yaml.Node | None, Any]:
    loader = loader_cls(text)
    try:
        root = loader.get_single_node()
        return root, (loader.construct_document(root) if root is not None else None)
    finally:
        loader.dispose()


def parse_yaml(text: str, file: str) -> tuple[YamlDocument | None, list[LocatedError]]:
    """Parse one YAML document; syntax errors and duplicate keys come back located."""
    try:
        try:
            root, data = _compose(text, _FAST_LOADER)
        except yaml.YAMLError:
            root, data = _compose(text, yaml.SafeLoader)  # raises again, with its words
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or exc.context or "unparseable"
        if "block" in problem or "indentation" in problem:
            problem += " (check the indentation)"
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


def _suggest(model: type[BaseModel], loc: Sequence[str | int]) -> str | None:
    """The field name closest to the unknown key at ``loc`` (walking the model's types)."""
    current: Any = model
    for part in loc[:-1]:
        current = _inner(current, part)
        if current is None:
            return None
    if not (isinstance(current, type) and issubclass(current, BaseModel)):
        return None
    names = [f.alias or n for n, f in current.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
    return close[0] if close else None


def _inner(tp: Any, part: str | int) -> Any:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if isinstance(part, int):
            return None
        field = next(
            (f for n, f in tp.model_fields.items() if (f.alias or n) == part or n == part), None
        )
        return _unwrap(field.annotation) if field else None
    origin = typing.get_origin(tp)
    if origin in (list, tuple) and isinstance(part, int):
        return _unwrap(typing.get_args(tp)[0])
    if origin is dict and isinstance(part, str):
        return _unwrap(typing.get_args(tp)[1])
    return None


def _unwrap(tp: Any) -> Any:
    # `X | None` → X, `Annotated[X, …]` → X
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else tp
    return tp
