"""What the installer allows a MessageQueue to ask of its worker pods, and the check of a spec
against it.

Whoever may create a MessageQueue gets pods that hold the Redis password. So the spec may not
choose what those pods run or where, beyond what the installer (the chart's values) allows:

- ``spec.worker.image``: the operator's own worker image, or one under a prefix of
  ``operator.allowedImages``. Prefixes match the image reference as written (no registry or
  ``library/`` is filled in), after the reference is checked against the OCI grammar (so
  ``..`` or upper case never slip past a prefix):

  - a prefix ending in ``/``, ``:`` or ``@`` matches anything that continues it:
    ``registry.example.com/team/`` allows ``registry.example.com/team/app:1`` and
    ``.../team/tools/app``, but not ``registry.example.com/team-evil/app``;
  - any other prefix is a whole repository (or image): ``registry.example.com/team/app``
    allows that repository with any tag or digest, not ``.../team/app-evil`` nor
    ``.../team/app/sub``; ``registry.example.com/team/app:1.2`` allows that tag only.

- ``spec.worker.tolerations``: each one must be one of ``worker.allowedTolerations`` or
  narrower (see :func:`toleration_covered`); none allowed by default, so no MessageQueue can
  schedule onto tainted (e.g. control-plane) nodes.
- ``spec.worker.nodeSelector``: each ``key: value`` must be listed in
  ``worker.allowedNodeSelectors`` (key -> allowed values); none by default.
- ``spec.maxReplicas``: at most ``operator.maxReplicasCeiling``.
- ``spec.worker.env``: ``{name, value}`` only (the CRD says so too; checked again here for a
  CRD that is older than the operator), and never a variable the operator sets or one of its
  families (``REDIS_*``, ``INFLUX_*``): ``REDIS_URL`` pointed at a server of the author's
  would receive the Redis password the pod gets by reference.

Pure functions; the operator reports every problem found as ``Ready=False``, reason
``InvalidSpec``, naming the field and the chart value that would allow it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

RESERVED_ENV_PREFIXES = ("REDIS_", "INFLUX_")
"""Worker variables a MessageQueue may not set: they say where credentials go."""

# The OCI / distribution reference grammar (github.com/distribution/reference), ASCII only.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"\w[\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?$", re.ASCII
)


@dataclass(frozen=True)
class Allowances:
    """The installer's limits (chart values, passed to the operator as ``OPERATOR_*``)."""

    worker_image: str
    images: Sequence[str] = ()
    """Prefixes (``operator.allowedImages``)."""
    tolerations: Sequence[Mapping[str, Any]] = ()
    """``worker.allowedTolerations``."""
    node_selectors: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """``worker.allowedNodeSelectors``: label key -> allowed values."""
    max_replicas_ceiling: int = 50
    """``operator.maxReplicasCeiling``."""
    operator_env: frozenset[str] = frozenset()
    """Names of the variables the operator gives every worker."""


def is_image_reference(image: str) -> bool:
    return bool(_REFERENCE.match(image))


def prefix_matches(image: str, prefix: str) -> bool:
    """Whether ``prefix`` (one entry of ``operator.allowedImages``) allows ``image``."""
    if not prefix:
        return False
    if prefix.endswith(("/", ":", "@")):
        return image.startswith(prefix) and len(image) > len(prefix)
    return image == prefix or image.startswith((prefix + ":", prefix + "@"))


def image_allowed(image: str, *, own: str, prefixes: Sequence[str]) -> bool:
    if image == own:
        return True
    return is_image_reference(image) and any(prefix_matches(image, p) for p in prefixes)


def _toleration(t: Mapping[str, Any]) -> tuple[str, str, str, str, int | None]:
    seconds = t.get("tolerationSeconds")
    return (
        str(t.get("key") or ""),
        str(t.get("operator") or "Equal"),
        str(t.get("value") or ""),
        str(t.get("effect") or ""),
        None if seconds is None else int(seconds),
    )


def toleration_covered(requested: Mapping[str, Any], allowed: Mapping[str, Any]) -> bool:
    """Whether ``requested`` tolerates only taints that ``allowed`` tolerates too.

    Narrower is fine: the same key with a value where ``allowed`` says ``Exists``; one effect
    where ``allowed`` names none; a shorter ``tolerationSeconds``. An ``allowed`` toleration
    with no key and ``Exists`` covers every key.
    """
    r_key, r_op, r_value, r_effect, r_seconds = _toleration(requested)
    a_key, a_op, a_value, a_effect, a_seconds = _toleration(allowed)
    if a_effect and a_effect != r_effect:
        return False
    if not (a_op == "Exists" and not a_key):
        if r_key != a_key:
            return False
        if a_op != "Exists" and (r_op != a_op or r_value != a_value):
            return False
    return a_seconds is None or (r_seconds is not None and r_seconds <= a_seconds)


def spec_problems(spec: Mapping[str, Any], allowances: Allowances) -> list[str]:
    """What in ``spec`` the installer does not allow, each naming the field and the chart value
    that would allow it; empty when the spec may run."""
    worker = spec.get("worker") or {}
    problems = []
    image = worker.get("image")
    if image:
        if image != allowances.worker_image and not is_image_reference(image):
            problems.append(f"spec.worker.image {image!r} is not a valid image reference")
        elif not image_allowed(image, own=allowances.worker_image, prefixes=allowances.images):
            others = f" or under {list(allowances.images)}" if allowances.images else ""
            problems.append(
                f"spec.worker.image {image!r} is not allowed: workers run "
                f"{allowances.worker_image!r}{others} (chart value operator.allowedImages)"
            )
    for i, toleration in enumerate(worker.get("tolerations") or []):
        if not any(toleration_covered(toleration, a) for a in allowances.tolerations):
            problems.append(
                f"spec.worker.tolerations[{i}] {_compact(toleration)} is not allowed "
                f"(chart value worker.allowedTolerations{_none(allowances.tolerations)})"
            )
    for key, value in sorted((worker.get("nodeSelector") or {}).items()):
        if value not in allowances.node_selectors.get(key, ()):
            problems.append(
                f"spec.worker.nodeSelector {key}={value} is not allowed "
                f"(chart value worker.allowedNodeSelectors{_none(allowances.node_selectors)})"
            )
    ceiling = allowances.max_replicas_ceiling
    if int(spec.get("maxReplicas", 10)) > ceiling:
        problems.append(
            f"spec.maxReplicas {spec['maxReplicas']} is above the ceiling of {ceiling} "
            "(chart value operator.maxReplicasCeiling)"
        )
    problems += _env_problems(worker.get("env") or [], allowances.operator_env)
    return problems


def _env_problems(env: Sequence[Mapping[str, Any]], reserved: frozenset[str]) -> list[str]:
    problems = []
    for i, item in enumerate(env):
        extra = sorted(set(item) - {"name", "value"})
        if extra:
            problems.append(
                f"spec.worker.env[{i}]: {', '.join(extra)} not allowed; a MessageQueue's env "
                "takes literal values only (secrets reach workers through the chart)"
            )
        name = str(item.get("name", ""))
        if name in reserved or name.startswith(RESERVED_ENV_PREFIXES):
            problems.append(
                f"spec.worker.env[{i}].name {name} is set by the operator "
                f"({'/'.join(p + '*' for p in RESERVED_ENV_PREFIXES)} and its own variables "
                "cannot be overridden)"
            )
    return problems


def _compact(toleration: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in toleration.items()) + "}"


def _none(allowed: Sequence[Any] | Mapping[str, Any]) -> str:
    return " allows none" if not allowed else ""
