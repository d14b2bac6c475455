"""Reading playbook files: YAML → :class:`Playbook`, with every error located.

This module does I/O; workflow code imports :mod:`stanch.playbook.planner` instead and gets
already-loaded playbooks as input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import ValidationError

from stanch.playbook.errors import LocatedError, PlaybookError
from stanch.playbook.schema import Playbook, semantic_errors
from stanch.playbook.yamlsrc import YamlDocument, read_yaml

SUFFIXES = (".yaml", ".yml")


def playbook_files(paths: Iterable[Path]) -> list[Path]:
    """Files named by ``paths``: files as given, directories' ``*.yaml``/``*.yml`` (not
    recursive, so ``playbooks/tests/`` fixtures are not playbooks), in name order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file()))
        else:
            files.append(path)
    return files


def load_playbooks(paths: Sequence[Path]) -> list[Playbook]:
    """Load every playbook under ``paths``; raise :class:`PlaybookError` listing every
    problem (file:line: field: message) when any file is invalid."""
    playbooks, errors = _load(paths)
    if errors:
        raise PlaybookError(errors)
    return playbooks


def lint(paths: Sequence[Path]) -> list[LocatedError]:
    """Every problem in the playbooks under ``paths``; empty when they are all valid."""
    return _load(paths)[1]


def _load(paths: Sequence[Path]) -> tuple[list[Playbook], list[LocatedError]]:
    playbooks: list[Playbook] = []
    errors: list[LocatedError] = []
    first_seen: dict[str, str] = {}
    files = playbook_files(paths)
    for path in files:
        if not path.exists():
            errors.append(LocatedError(str(path), 1, "", "no such file or directory"))
            continue
        doc, found = read_yaml(path)
        errors.extend(found)
        if doc is None or found:
            continue
        pb, found = _validate(doc)
        errors.extend(found)
        if pb is None:
            continue
        where = f"{doc.file}:{doc.line(('name',))}"
        if pb.name in first_seen:
            errors.append(
                doc.error(("name",), f"duplicate playbook name {pb.name!r} "
                          f"(also in {first_seen[pb.name]})")
            )
            continue
        first_seen[pb.name] = where
        playbooks.append(pb)
    return playbooks, errors


def _validate(doc: YamlDocument) -> tuple[Playbook | None, list[LocatedError]]:
    if not isinstance(doc.data, dict):
        got = "an empty file" if doc.data is None else type(doc.data).__name__
        return None, [doc.error((), f"a playbook is a mapping with name, match, rules and "
                                    f"ladder (got {got})")]
    try:
        pb = Playbook.model_validate(doc.data)
    except ValidationError as err:
        return None, doc.validation_errors(err, Playbook)
    errors = [doc.error(loc, msg) for loc, msg in semantic_errors(pb)]
    return (None, errors) if errors else (pb, [])
