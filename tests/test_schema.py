"""report.schema.json is shipped, is a valid JSON Schema, and says no to what is not a report.
(Every report a test makes is checked against it by conftest.every_report_matches_the_schema.)"""

import copy
import importlib.resources
import json

import jsonschema
import pytest

from auditor.errors import AuditError
from auditor.report import schema


def test_the_schema_ships_in_the_package_and_is_valid():
    text = importlib.resources.files("auditor.report").joinpath("report.schema.json").read_text()
    jsonschema.Draft202012Validator.check_schema(json.loads(text))


def test_a_report_conforms_and_each_break_is_caught(audit_sample):
    data = json.loads(json.dumps(audit_sample("makemore_raw").to_dict()))
    assert schema.errors(data) == []
    for path, value in [(("verdict",), "fine"), (("findings", 0, "severity"), "fatal"),
                        (("probe", "steps"), "100"), (("counts", "error"), -1), (("surprise",), 1),
                        (("findings", 0, "verified", "surprise"), 1)]:
        broken = copy.deepcopy(data)
        target = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert schema.errors(broken), path


def test_check_names_the_problem():
    with pytest.raises(AuditError, match="schema_version 2"):
        schema.check({"schema_version": 2}, "r.json")
