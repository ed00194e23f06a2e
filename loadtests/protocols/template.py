"""``--protocol template --request-template FILE``: any JSON-over-HTTP contract, described in a
TOML or JSON file rather than code — a user's own FastAPI service, say::

    method = "POST"                      # default POST
    path = "/score"                      # below --url's path
    ready_path = "/healthz"              # optional: must answer 200 before the load starts
    [headers]                            # optional, added to every request
    x-api-key = "secret"
    [body]                               # the JSON body; these strings are replaced by values:
    features = "{{rows}}"                #   every row sent (a list of lists)
    first = "{{row}}"                    #   the first row
    id = "{{request_id}}"                #   the payload's id (a pooled payload keeps its id)
    n = "{{row_count}}"                  #   how many rows
    [response]
    predictions = "results[*].score"     # JMESPath: the predictions, one per row sent
    [response.schema]                    # optional JSON Schema every 200 must satisfy
    type = "object"
    required = ["results"]

A deliberately invalid payload puts rows that are not numbers where ``{{rows}}`` / ``{{row}}``
stand: a service that validates its input answers 4xx, an expected rejection.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jmespath
import jsonschema

from loadtests.engine.driver import Reply
from loadtests.engine.workload import Payload
from loadtests.errors import ConfigError
from loadtests.protocols.base import SCHEMA_FAILURE, HttpContract, HttpRequest, count_predictions

BAD_ROWS: list[list[Any]] = [["not-a-number"]]
KEYS = {"method", "path", "ready_path", "headers", "body", "response"}


@dataclass(slots=True)
class Template(HttpContract):
    name: ClassVar[str] = "template"
    source: str = ""
    method: str = "POST"
    path: str = "/"
    body: Any = None
    predictions: Any = None  # a compiled JMESPath expression
    validator: Any = None  # a jsonschema validator, or None

    @classmethod
    def load(cls, path: str | Path, headers: tuple[tuple[str, str], ...] = ()) -> Template:
        """Read and check ``path`` (TOML, or JSON by its suffix); ``ConfigError`` naming the
        file and the key otherwise."""
        data = _read(Path(path))
        where = str(path)
        unknown = sorted(set(data) - KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
        response = data.get("response")
        if not isinstance(response, dict) or not isinstance(response.get("predictions"), str):
            raise ConfigError(f"{where}: response.predictions (a JMESPath) is required")
        try:
            expression = jmespath.compile(response["predictions"])
        except jmespath.exceptions.ParseError as exc:
            raise ConfigError(f"{where}: response.predictions: {exc}") from None
        validator = None
        if "schema" in response:
            try:
                jsonschema.Draft202012Validator.check_schema(response["schema"])
            except jsonschema.SchemaError as exc:
                raise ConfigError(f"{where}: response.schema: {exc.message}") from None
            validator = jsonschema.Draft202012Validator(response["schema"])
        extra = data.get("headers", {})
        if not isinstance(extra, dict):
            raise ConfigError(f"{where}: headers must be a table of NAME = VALUE")
        return cls(
            headers=(*((str(k), str(v)) for k, v in extra.items()), *headers),
            ready_path=_optional_path(data.get("ready_path"), where),
            source=where,
            method=str(data.get("method", "POST")).upper(),
            path=_optional_path(data.get("path", "/"), where) or "/",
            body=data.get("body"),
            predictions=expression,
            validator=validator,
        )

    def request(self, payload: Payload) -> HttpRequest:
        rows: list[list[Any]] = payload.rows if payload.valid else BAD_ROWS
        values = {
            "{{rows}}": rows,
            "{{row}}": rows[0] if rows else [],
            "{{request_id}}": f"servelab-{payload.slot}",
            "{{row_count}}": len(rows),
        }
        body = json.dumps(_fill(self.body, values), separators=(",", ":")).encode()
        headers = (("content-type", "application/json"), *self.headers)
        return HttpRequest(self.method, self.path, body if self.body is not None else b"", headers)

    def judge_ok(self, payload: Payload, answer: Any) -> Reply:
        if self.validator is not None and not self.validator.is_valid(answer):
            return SCHEMA_FAILURE
        return count_predictions(payload, self.predictions.search(answer))


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read --request-template {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table at the top")
    return data


def _optional_path(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(f"{where}: paths start with '/', got {value!r}")
    return value


def _fill(template: Any, values: Mapping[str, Any]) -> Any:
    """``template`` with every placeholder string replaced by its value."""
    if isinstance(template, str):
        return values.get(template, template)
    if isinstance(template, list):
        return [_fill(item, values) for item in template]
    if isinstance(template, dict):
        return {key: _fill(item, values) for key, item in template.items()}
    return template
