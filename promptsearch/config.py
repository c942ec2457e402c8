"""Typed configs read from YAML: the strict base every config model shares, and the one loader.

In: a YAML (or JSON) file and the pydantic model it should hold.
Out: the validated model, or a `SpaceError` listing every mistake with its YAML path and line
(`sampling.temperature.high: must be <= 2.0 (line 12)`). Search spaces, proxy profiles, ablation
profiles, bundle manifests and recipe files are all read through `load_model`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from promptsearch.errors import SpaceError, UserError

Model = TypeVar("Model", bound=BaseModel)
Location = tuple[Any, ...]


SEED_LIMIT = 2**32  # numpy's, torch's and vLLM's seeds are unsigned 32-bit


class StrictModel(BaseModel):
    """Unknown keys are mistakes, NaN and infinity are not numbers, and a loaded config never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def http_url_problem(url: str) -> str | None:
    """Why `url` cannot be an HTTP endpoint (no scheme, no host, a port outside 1-65535), or None."""
    from urllib.parse import urlsplit

    if not url.startswith(("http://", "https://")):
        return f"must start with http:// or https:// (got {url!r})"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"{url!r}: {exc}"
    if not parts.hostname:
        return f"{url!r} names no host"
    if port is not None and not 1 <= port <= 65535:
        return f"{url!r}: port {port} is outside 1-65535"
    return None


class YamlDocument:
    """A parsed YAML file: its data, and its node tree to find the line of any setting."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise UserError(f"file not found: {path}")
        self.path = path
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SpaceError(str(path), [f"not UTF-8 (byte {exc.start}): save the file as UTF-8"]) from exc
        try:
            self.data: Any = yaml.safe_load(text)
            self.root: yaml.Node | None = yaml.compose(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark else ""
            raise SpaceError(str(path), [f"not valid YAML: {getattr(exc, 'problem', exc)}{where}"]) from exc

    def line_of(self, loc: Location) -> int | None:
        node, line = self.root, None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
                if match is None:
                    return line
                node = match
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
            else:
                return line
            line = node.start_mark.line + 1
        return line

    def located(self, loc: Location, message: str) -> str:
        """`a.b[2].c: message (line N)`."""
        line = self.line_of(loc)
        return f"{_loc_to_path(loc)}: {message}" + (f" (line {line})" if line else "")

    def validation_messages(self, error: ValidationError) -> list[str]:
        messages = []
        for item in error.errors():
            # pydantic wraps model-validator errors in the model's location; field errors carry the field.
            loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            messages.append(self.located(loc, item["msg"].removeprefix("Value error, ")))
        return messages

    def validate(self, model: type[Model]) -> Model:
        if not isinstance(self.data, dict):
            raise SpaceError(str(self.path), ["(top level): must be a mapping of settings"])
        try:
            return model.model_validate(self.data)
        except ValidationError as exc:
            raise SpaceError(str(self.path), self.validation_messages(exc)) from exc


def _loc_to_path(loc: Location) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def load_model(path: Path, model: type[Model]) -> Model:
    """Read `path` as `model`; every schema mistake is reported at once, located."""
    return YamlDocument(path).validate(model)


def resolve_relative(base: Path, value: str) -> str:
    """Paths in a config file are relative to the file's folder."""
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def api_key_from_env(variable: str, owner: str) -> str:
    """The secret in environment variable `variable`; read at use, never stored or logged."""
    key = os.environ.get(variable)
    if not key:
        raise UserError(f"{owner}: environment variable {variable} is not set")
    return key
