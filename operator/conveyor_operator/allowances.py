"""What the installer allows a MessageQueue to ask of its worker pods, and the check of a spec
against it.

Whoever may create a MessageQueue gets pods that hold the Redis password. So the spec may not
choose what those pods run or where, beyond what the installer (the chart's values) allows:

- ``spec.worker.image``: the operator's own worker image, or one under a prefix of
  ``operator.allowedImages``. Prefixes match the image reference as written (no registry or
  ``library/`` is filled in), after the reference is checked against the OCI grammar (so
  ``..`` or upper case never slip past a prefix). Every prefix has a ``/``: without one,
  ``registry.example.com`` would also allow ``registry.example.com:5000/anything`` (the
  operator refuses to start with such a prefix, see :func:`image_prefix_problem`).

  - a prefix ending in ``/``, ``:`` or ``@`` matches anything that continues it:
    ``registry.example.com/team/`` allows ``registry.example.com/team/app:1`` and
    ``.../team/tools/app``, but not ``registry.example.com/team-evil/app``;
  - a prefix with a tag or digest is that one reference: ``registry.example.com/team/app:1.2``
    allows neither ``...:1.2.3`` nor ``...:1.2@sha256:<any>``;
  - any other prefix is a whole repository: ``registry.example.com/team/app`` allows that
    repository with any tag or digest, not ``.../team/app-evil`` nor ``.../team/app/sub``.

- ``spec.worker.handler`` (``module:function``): only a module under a prefix of
  ``operator.allowedHandlers``; none by default (only the built-in processors). Importing a
  module runs it, and the worker image holds modules whose import has side effects
  (``antigravity`` starts ``$BROWSER``), so the module is what must be allowed, not the function.
  A prefix ending in ``.`` allows that package and every module under it (``plant.`` allows
  ``plant.energy:handle``, not ``plantx:handle``); any other prefix is one whole module.
- ``spec.worker.tolerations``: each one must be one of ``worker.allowedTolerations`` or
  narrower (see :func:`toleration_covered`); none allowed by default, so no MessageQueue can
  schedule onto tainted (e.g. control-plane) nodes.
- ``spec.worker.nodeSelector``: each ``key: value`` must be listed in
  ``worker.allowedNodeSelectors`` (key -> allowed values); none by default.
- ``spec.worker.priorityClassName``: one of ``worker.allowedPriorityClasses``; none by default,
  so no MessageQueue can make its pods preempt others (``system-node-critical`` would evict
  whatever the node runs).
- ``spec.maxReplicas``: at most ``operator.maxReplicasCeiling``.
- ``spec.worker.env``: ``{name, value}`` only, and names from an allow-list,
  :data:`ENV_NAME_PATTERN` (the CRD says both too; checked again here for a CRD that is older
  than the operator). A deny-list cannot work: ``PYTHONWARNINGS`` + ``BROWSER``,
  ``LD_PRELOAD``, proxies or ``PATH`` change what the pod runs or where it connects, and
  pydantic-settings reads names case-insensitively (``redis_url`` would redirect the Redis
  password like ``REDIS_URL``). So: ``APP_*`` for a custom handler's own settings, ``WORKER_*``
  and ``ALERT_*`` for the worker's sinks (``WorkerSettings``), upper case only.

Pure functions; the operator reports every problem found as ``Ready=False``, reason
``InvalidSpec``, naming the field and the chart value that would allow it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor_operator.spec import MessageQueueSpec

_DEFAULT_MAX_REPLICAS = MessageQueueSpec.model_fields["max_replicas"].default

ENV_NAME_PATTERN = r"^(APP|WORKER|ALERT)_[A-Z0-9_]+$"
"""The names a MessageQueue's ``spec.worker.env`` may set (the CRD's rule says the same)."""
_ENV_NAME = re.compile(ENV_NAME_PATTERN, re.ASCII)

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE = re.compile(rf"^{_IDENTIFIER}(?:\.{_IDENTIFIER})*$", re.ASCII)
_HANDLER = re.compile(
    rf"^({_IDENTIFIER}(?:\.{_IDENTIFIER})*):{_IDENTIFIER}(?:\.{_IDENTIFIER})*$", re.ASCII
)

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
    handlers: Sequence[str] = ()
    """Module prefixes (``operator.allowedHandlers``); empty: the built-in processors only."""
    tolerations: Sequence[Mapping[str, Any]] = ()
    """``worker.allowedTolerations``."""
    node_selectors: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """``worker.allowedNodeSelectors``: label key -> allowed values."""
    priority_classes: Sequence[str] = ()
    """``worker.allowedPriorityClasses``."""
    max_replicas_ceiling: int = 50
    """``operator.maxReplicasCeiling``."""
    operator_env: frozenset[str] = frozenset()
    """Names of the variables the operator gives every worker."""


def is_image_reference(image: str) -> bool:
    return bool(_REFERENCE.fullmatch(image))


def image_prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot be an entry of ``operator.allowedImages``; None when it can."""
    if not prefix or any(c.isspace() or c == "*" for c in prefix):
        return f"{prefix!r}: write prefixes without spaces or '*'"
    if "/" not in prefix:
        return (
            f"{prefix!r} has no '/': write the registry and a path, e.g. "
            "registry.example.com/team/ (without a '/', a prefix also allows other "
            "registries and ports that merely start with it)"
        )
    stem = prefix[:-1] if prefix.endswith(("/", ":", "@")) else prefix
    if not is_image_reference(stem):
        return f"{prefix!r} is not an image reference or a prefix of one"
    return None


def prefix_matches(image: str, prefix: str) -> bool:
    """Whether ``prefix`` (one entry of ``operator.allowedImages``) allows ``image``."""
    if "/" not in prefix:
        return False  # refused at start (image_prefix_problem); never a match
    if prefix.endswith(("/", ":", "@")):
        return image.startswith(prefix) and len(image) > len(prefix)
    if "@" in prefix or ":" in prefix.rsplit("/", 1)[1]:
        return image == prefix  # a tag or a digest: that reference only
    return image == prefix or image.startswith((prefix + ":", prefix + "@"))


def image_allowed(image: str, *, own: str, prefixes: Sequence[str]) -> bool:
    if image == own:
        return True
    return is_image_reference(image) and any(prefix_matches(image, p) for p in prefixes)


def handler_prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot be an entry of ``operator.allowedHandlers``; None when it can."""
    if not _MODULE.fullmatch(prefix.removesuffix(".")):
        return (
            f"{prefix!r}: write a module (plant.energy) or a package ending in '.' (plant.), "
            "without spaces, '*' or ':'"
        )
    return None


def handler_allowed(handler: str, prefixes: Sequence[str]) -> bool:
    """Whether ``handler`` (``module:function``) names a module under one of ``prefixes``."""
    found = _HANDLER.fullmatch(handler)
    if not found:
        return False
    module = found.group(1)
    for prefix in prefixes:
        if handler_prefix_problem(prefix):
            continue
        if prefix.endswith("."):
            if module == prefix[:-1] or module.startswith(prefix):
                return True
        elif module == prefix:
            return True
    return False


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
    handler = worker.get("handler")
    if handler and not handler_allowed(str(handler), allowances.handlers):
        allowed = (
            f"modules under {list(allowances.handlers)}"
            if allowances.handlers
            else "the built-in processors only"
        )
        problems.append(
            f"spec.worker.handler {handler!r} is not allowed: workers run {allowed} "
            f"(chart value operator.allowedHandlers{_none(allowances.handlers)})"
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
    priority_class = worker.get("priorityClassName")
    if priority_class and priority_class not in allowances.priority_classes:
        classes = list(allowances.priority_classes)
        problems.append(
            f"spec.worker.priorityClassName {priority_class!r} is not allowed (chart value "
            f"worker.allowedPriorityClasses{f': {classes}' if classes else ' allows none'})"
        )
    ceiling = allowances.max_replicas_ceiling
    if int(spec.get("maxReplicas", _DEFAULT_MAX_REPLICAS)) > ceiling:
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
        if name in reserved:
            problems.append(
                f"spec.worker.env[{i}].name {name} is set by the operator and cannot be overridden"
            )
        elif not _ENV_NAME.fullmatch(name):
            problems.append(
                f"spec.worker.env[{i}].name {name!r} is not allowed: names must match "
                f"{ENV_NAME_PATTERN} (APP_* for a custom handler, WORKER_* and ALERT_* for the "
                "worker's sinks); other variables change what the worker runs or where its "
                "credentials go"
            )
    return problems


def _compact(toleration: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in toleration.items()) + "}"


def _none(allowed: Sequence[Any] | Mapping[str, Any]) -> str:
    return " allows none" if not allowed else ""
