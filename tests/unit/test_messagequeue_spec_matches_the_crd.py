"""The operator's typed MessageQueue spec (conveyor_operator.spec) and the CRD's schema name the
same fields, with the same defaults and bounds, at every level: the API server applies the
CRD's defaults before the operator reads an object, so the two must never drift apart. And the
queue policy a spec gives is the library's default policy when the spec sets nothing."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from conveyor_operator.policies import desired_policy
from conveyor_operator.spec import MessageQueueSpec

from reliable_queue import QueuePolicy, UsageError
from tests.helpers import ROOT

CRDS = [
    ROOT / "charts" / "conveyor" / "crds" / "conveyor.io_messagequeues.yaml",
    ROOT / "manifests" / "crd" / "bases" / "conveyor.io_messagequeues.yaml",
]
BOUNDS = ("minimum", "maximum", "maxLength", "minLength", "pattern", "enum")


def crd_spec(path: Any) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    [version] = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def model_schema() -> dict[str, Any]:
    schema = MessageQueueSpec.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:  # keeping the field's own keys (its default) beside the type's
                here = {k: v for k, v in node.items() if k != "$ref"}
                return {**resolve(defs[node["$ref"].rsplit("/", 1)[1]]), **here}
            if "anyOf" in node:  # Optional[X]: X
                [inner] = [n for n in node["anyOf"] if n.get("type") != "null"]
                return resolve({**{k: v for k, v in node.items() if k != "anyOf"}, **inner})
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(n) for n in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def _bound(model: dict[str, Any], name: str) -> Any:
    """A model bound in the CRD's terms: pydantic writes ``gt`` as exclusiveMinimum."""
    if name == "minimum" and "exclusiveMinimum" in model:
        return model["exclusiveMinimum"]
    if name == "enum" and "const" in model:
        return [model["const"]]
    return model.get(name)


def compare(crd: dict[str, Any], model: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    crd_props, model_props = crd.get("properties", {}), model.get("properties", {})
    if set(crd_props) != set(model_props):
        problems.append(
            f"{where}: only in the CRD {sorted(set(crd_props) - set(model_props))}, "
            f"only in the model {sorted(set(model_props) - set(crd_props))}"
        )
    for name in sorted(set(crd_props) & set(model_props)):
        c, m, at = crd_props[name], model_props[name], f"{where}.{name}"
        if c.get("type") == "object" and "properties" in c:
            # The CRD's `default: {}` has the API server fill in the fields' defaults; the
            # model's default is the part with its fields' defaults: the same, if both have one.
            # An optional part (default None in the model) has no default in the CRD.
            if ("default" in c) != (m.get("default") is not None):
                problems.append(f"{at}: a default in only one of the CRD and the model")
            problems += compare(c, m, at)
            continue
        if "default" not in c and m.get("default") in ([], {}):
            pass  # an empty list or map is what a field the CRD leaves out means
        elif c.get("default") != m.get("default"):
            problems.append(f"{at}: default {c.get('default')!r} in the CRD, {m.get('default')!r}")
        for bound in BOUNDS:
            if (bound in c or _bound(m, bound) is not None) and c.get(bound) != _bound(m, bound):
                problems.append(f"{at}: {bound} {c.get(bound)!r} in the CRD, {_bound(m, bound)!r}")
        if c.get("exclusiveMinimum") is True and "exclusiveMinimum" not in m:
            problems.append(f"{at}: the CRD's minimum is exclusive, the model's is not")
    return problems


@pytest.mark.parametrize("path", CRDS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_crd_and_the_model_agree(path: Any) -> None:
    assert compare(crd_spec(path), model_schema(), "spec") == []


def test_the_comparison_sees_a_difference() -> None:
    crd = crd_spec(CRDS[0])
    crd["properties"]["maxReplicas"]["default"] = 11
    crd["properties"]["retry"]["properties"]["maxRetries"]["maximum"] = 9
    del crd["properties"]["leaseSeconds"]["minimum"]  # the model alone bounds it: also a drift
    del crd["properties"]["paused"]
    problems = compare(crd, model_schema(), "spec")
    assert any("spec.maxReplicas: default 11" in p for p in problems)
    assert any("spec.retry.maxRetries: maximum 9" in p for p in problems)
    assert any("only in the model ['paused']" in p for p in problems)
    assert any("spec.leaseSeconds: minimum None in the CRD, 1" in p for p in problems)


def test_an_empty_spec_gives_the_librarys_default_policy() -> None:
    spec = MessageQueueSpec.parse({"queue": "q"})
    assert desired_policy(spec) == QueuePolicy().merged(concurrency=1)


def test_a_spec_out_of_bounds_names_the_field() -> None:
    with pytest.raises(UsageError, match=r"spec\.retry\.maxRetries: .*less than or equal to 1000"):
        MessageQueueSpec.parse({"queue": "q", "retry": {"maxRetries": 5000}})


def spec_default(path: str) -> Any:
    """The model's default of a camelCase path such as ``retry.maxRetries``."""
    schema = model_schema()
    for name in path.split("."):
        schema = schema["properties"][name]
    return schema.get("default")


def test_the_operator_docs_give_the_models_defaults() -> None:
    """docs/operator.md's table of fields repeats the defaults for readers: it must not lie."""
    text = (ROOT / "docs" / "operator.md").read_text()
    table = text.split("| field | default | meaning |", 1)[1].split("\n\n", 1)[0]
    checked = 0
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = [n.strip().strip("`") for n in cells[0].split(",")]
        shown = [d.strip() for d in cells[1].split(",")]
        if shown in (["(required)"], ["the chart's"], [""]):
            continue
        parent = names[0].rsplit(".", 1)[0] if "." in names[0] else ""
        paths = [parent + n if n.startswith(".") else n for n in names]
        assert len(shown) == len(paths), row
        for path, default in zip(paths, shown, strict=True):
            expected = spec_default(path)
            if default == "unset":
                assert expected is None, (path, expected)
            elif default in ("true", "false"):
                assert expected is (default == "true"), (path, expected)
            elif default[0].isdigit():
                assert float(default) == expected, (path, default, expected)
            else:
                assert default == expected, (path, default, expected)
            checked += 1
    assert checked >= 15, f"only {checked} defaults found in the table: did its format change?"
