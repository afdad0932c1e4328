"""Read YAML with the line of every key, so problems can point at ``file:line``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .problems import ConfigError, ConfigProblem

KeyPath = tuple[str, ...]


def read_yaml(path: str | Path, label: str | None = None
              ) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """Parse a YAML mapping and return it with ``{key path: line}``.

    An empty file is an empty mapping. Invalid YAML, a top level that is not a mapping,
    and a key given twice in one mapping raise :class:`ConfigError` naming the file and line.
    """
    label = label or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(label, "", "file not found",
                                         "check the path, or create the file")]) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem(label, "", f"cannot read file: {exc.strerror}",
                                         "check its permissions")]) from None
    return parse_yaml(text, label)


def parse_yaml(text: str, label: str) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """Like :func:`read_yaml` for text already in memory."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        what = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        col = f", column {mark.column + 1}" if mark is not None else ""
        raise ConfigError([ConfigProblem(
            label, "", f"invalid YAML: {what}{col}",
            "fix the YAML syntax (indentation, ':' after keys, matching quotes)", line)]) from None
    if node is None:
        return {}, {}
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError([ConfigProblem(
            label, "", "the top level must be a mapping (keys such as 'sites:')",
            "start the file with 'sites:', 'datasets:' or 'policies:'", node.start_mark.line + 1)])
    lines: dict[KeyPath, int] = {}
    problems: list[ConfigProblem] = []
    _walk(node, (), lines, problems, label)
    if problems:
        raise ConfigError(problems)
    data = yaml.safe_load(text) or {}
    return data, lines


def _walk(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int],
          problems: list[ConfigProblem], label: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            sub = (*path, key)
            if key in seen:
                problems.append(ConfigProblem(
                    label, ".".join(sub), "key given twice in the same mapping",
                    "keep one of them", key_node.start_mark.line + 1))
            seen.add(key)
            lines[sub] = key_node.start_mark.line + 1
            _walk(value_node, sub, lines, problems, label)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = (*path, str(i))
            lines[sub] = item.start_mark.line + 1
            _walk(item, sub, lines, problems, label)
