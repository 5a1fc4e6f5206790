"""``conveyor apply-crds FILE...``: server-side apply the CustomResourceDefinitions in the files.

Helm installs a chart's ``crds/`` at ``helm install`` and never upgrades them, so a
``helm upgrade`` to a chart whose MessageQueue has new fields would leave the old schema in
place, and the API server would silently drop the new fields from every MessageQueue. The
chart runs this command as its pre-upgrade hook (``crds.upgrade``), with a ServiceAccount that
may only read and patch its own CRDs by name: an existing CRD is updated, none is created (one
not installed is left to whoever installs the chart), and one with fields this chart's lacks,
from a newer chart of another release, is left alone rather than downgraded for every release.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

from reliable_queue import UsageError

log = logging.getLogger(__name__)
FIELD_MANAGER = "conveyor-crds"
REQUEST_TIMEOUT = (5.0, 30.0)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "apply-crds",
        help="server-side apply the CRDs in YAML files (the chart's pre-upgrade hook)",
        description="Applies every CustomResourceDefinition in the files (server-side apply, "
        f"field manager {FIELD_MANAGER}, taking over fields another manager set). It updates, "
        "never creates: a CRD not installed is skipped (helm install creates it), and so is "
        "one with fields the file lacks (a newer chart's), which it would take away.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.set_defaults(run=cmd_apply_crds)


async def cmd_apply_crds(args: argparse.Namespace) -> int:
    crds = [doc for path in args.files for doc in read_crds(path)]
    return await asyncio.to_thread(apply_all, crds)


def read_crds(path: Path) -> list[dict[str, Any]]:
    """The CRDs in a YAML file; anything else in it is refused, naming the file."""
    import yaml  # type: ignore[import-untyped]  # PyYAML: the kubernetes client depends on it

    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
            kind = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
            raise UsageError(f"{path}: holds a {kind}, not only CustomResourceDefinitions")
    return docs


def apply_all(crds: list[dict[str, Any]]) -> int:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    api = client.ApiextensionsV1Api()
    for crd in crds:
        name = crd["metadata"]["name"]
        try:
            live = api.read_custom_resource_definition(name, _request_timeout=REQUEST_TIMEOUT)
            if live is not None and (newer := fields_missing(api_client_dict(api, live), crd)):
                log.warning(
                    "CRD %s not applied: the cluster's has fields this chart's lacks (%s), so it "
                    "is newer, from another release's chart; applying would drop them from "
                    "every MessageQueue. Apply this chart's CRD by hand if that is meant.",
                    name,
                    ", ".join(newer[:5]) + (" ..." if len(newer) > 5 else ""),
                )
                continue
            api.patch_custom_resource_definition(
                name,
                crd,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:  # not installed: whoever installs the chart creates it
                log.info("CRD %s is not installed: nothing to upgrade", name)
                continue
            hint = {
                403: "this ServiceAccount may not read and patch it (the chart's hook Role "
                "names each CRD)",
            }.get(exc.status or 0, "see the API server's message above")
            log.error("CRD %s not applied: %s %s; %s", name, exc.status, exc.reason, hint)
            return 1
        log.info("CRD %s applied", name)
    return 0


def api_client_dict(api: Any, obj: Any) -> dict[str, Any]:
    """A client model as the API's JSON (camelCase keys), as the files hold it."""
    result: dict[str, Any] = api.api_client.sanitize_for_serialization(obj)
    return result


def fields_missing(live: dict[str, Any], chart: dict[str, Any]) -> list[str]:
    """Fields (``version:path``) the live CRD's schemas have and the chart's lack: a live CRD
    from a newer chart, which applying this one would take fields away from."""
    chart_versions = {v["name"]: v for v in chart["spec"]["versions"]}
    missing: list[str] = []
    for version in live.get("spec", {}).get("versions", []):
        ours = chart_versions.get(version["name"])
        if ours is None:
            missing.append(version["name"])
            continue
        _walk(
            version.get("schema", {}).get("openAPIV3Schema", {}),
            ours.get("schema", {}).get("openAPIV3Schema", {}),
            f"{version['name']}:",
            missing,
        )
    return missing


def _walk(live: dict[str, Any], ours: dict[str, Any], path: str, out: list[str]) -> None:
    for name, sub in (live.get("properties") or {}).items():
        here = f"{path}{name}" if path.endswith(":") else f"{path}.{name}"
        theirs = (ours.get("properties") or {}).get(name)
        if theirs is None:
            out.append(here)
        else:
            _walk(sub, theirs, here, out)
    for key, mark in (("items", "[]"), ("additionalProperties", "{}")):
        if isinstance(live.get(key), dict) and isinstance(ours.get(key), dict):
            _walk(live[key], ours[key], path + mark, out)
