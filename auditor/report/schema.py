"""report.json's published JSON Schema (report.schema.json, shipped in the package), checked with the
`jsonschema` library: what `audit diff` reads is validated before a number of it is compared."""

from __future__ import annotations

import functools
import importlib.resources
import json

from ..errors import AuditError


@functools.cache
def schema() -> dict:
    return json.loads(importlib.resources.files("auditor.report").joinpath("report.schema.json").read_text())


def errors(data) -> list[str]:
    """Every way `data` departs from the schema, as 'where: what' lines; empty when it conforms."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
            for e in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))]


def check(data, source: str) -> dict:
    """`data` if it is a report this version can read, else an AuditError naming the first problem."""
    if not isinstance(data, dict) or "schema_version" not in data:
        raise AuditError(f"{source}: not a training-run audit report (no schema_version); pass a report.json "
                         "written by `audit`, or the folder holding it")
    version = data["schema_version"]
    wanted = schema()["properties"]["schema_version"]["const"]
    if version != wanted:
        raise AuditError(f"{source}: report schema_version {version!r}, but this auditor reads version {wanted}; "
                         "re-run both audits with one auditor version")
    found = errors(data)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise AuditError(f"{source}: does not match report.schema.json: {found[0]}{more}")
    return data
