"""The one YAML loader: every YAML file of the project is read here.

A file that cannot be read or parsed gives a :class:`~energy.errors.ValidationError` of one
line that names the file and the line and column (``site.yaml:line 4, column 1: malformed
YAML: ...``), with ``line`` set; the CLI prints it and exits 1. A validator passed as
``parse`` names the path inside the document (``assets[2].channels[0].key``) in its error;
the loader then sets the error's ``line`` to where that path is in the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from yaml.reader import ReaderError

from energy.errors import ValidationError

_PATH_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _parse(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        problem = _one_line(exc.problem or str(exc))
        ctx = exc.context_mark
        if ctx is not None and mark is not None and ctx.line != mark.line:
            problem += f" ({_one_line(exc.context or 'block')} started at line {ctx.line + 1})"
        if mark is None:
            raise ValidationError(f"malformed YAML: {problem}", source) from None
        raise ValidationError(
            f"malformed YAML: {problem}",
            source,
            f"line {mark.line + 1}, column {mark.column + 1}",
            line=mark.line + 1,
        ) from None
    except ReaderError as exc:  # a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise ValidationError(
            f"malformed YAML: unacceptable character #x{exc.character:04x}: {exc.reason}",
            source,
            f"line {line}, column {column}",
            line=line,
        ) from None


def line_of(text: str, location: str) -> int | None:
    """The 1-based line of a document path (``assets[2].channels[0].key``) in YAML ``text``.

    A path that leaves the document part-way (a missing field) gives the line of the deepest
    node it reaches; ``None`` if it reaches none, or ``text`` is not valid YAML.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for index, key in _PATH_PART.findall(location):
        if index and isinstance(node, yaml.SequenceNode) and int(index) < len(node.value):
            node = node.value[int(index)]
        elif key and isinstance(node, yaml.MappingNode):
            found = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key]
            if not found:
                break
            node = found[0]
        else:
            break
        line = node.start_mark.line + 1
    return line


def load_yaml_text(
    text: str, source: str = "<text>", parse: Callable[[Any], Any] | None = None
) -> Any:
    """Parse YAML ``text`` (safe loader), then ``parse(data)`` if given; ``source`` names it.

    Raises
    ------
    ValidationError
        For malformed YAML, at ``line L, column C`` of ``source``, with ``line`` set; an
        error of ``parse`` for ``source`` at a document path gets the ``line`` of that path.
    """
    data = _parse(text, source)
    if parse is None:
        return data
    try:
        return parse(data)
    except ValidationError as exc:
        if exc.line is None and exc.location and exc.source == source:
            exc.line = line_of(text, exc.location)
        raise


def load_yaml_file(
    path: Path | str, what: str = "file", parse: Callable[[Any], Any] | None = None
) -> Any:
    """Read one YAML file as :func:`load_yaml_text` does; ``what`` names it in errors.

    Raises
    ------
    ValidationError
        For a missing or unreadable file (``scenario file not found``), text that is not
        UTF-8, malformed YAML or an error of ``parse``, naming the file (and the line).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError(f"{what} not found", str(p)) from None
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start})", str(p)
        ) from None
    except OSError as exc:
        raise ValidationError(f"cannot read {what}: {exc.strerror or exc}", str(p)) from None
    return load_yaml_text(text, str(p), parse)
