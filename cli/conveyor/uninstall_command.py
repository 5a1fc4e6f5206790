"""``conveyor delete-messagequeues``: delete a namespace's MessageQueues while the operator still
runs, and wait until it has let them go. The chart runs it as its pre-delete hook, because
``helm uninstall`` would otherwise stop the operator while it deletes the queues, leaving them
held by the operator's finalizer with nobody to release it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from typing import Any

log = logging.getLogger(__name__)
GROUP, VERSION, PLURAL = "conveyor.io", "v1alpha1", "messagequeues"
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
REQUEST_TIMEOUT = (5.0, 20.0)
"""(connect, read) seconds of every API call: a hung API server fails the hook, never hangs it."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "delete-messagequeues",
        help="delete every MessageQueue in a namespace, waiting for the operator (uninstall)",
        description="Deletes every MessageQueue in the namespace and waits until the operator has "
        "finished with them (their worker Deployments go with them; Redis data per "
        "deletionPolicy). Past --timeout, whatever is left is let go by removing its "
        "finalizer, and said so. The chart's pre-delete hook.",
    )
    p.add_argument("--namespace", help="default: $WATCH_NAMESPACE, else this pod's namespace")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    p.set_defaults(run=cmd_delete_messagequeues)


async def cmd_delete_messagequeues(args: argparse.Namespace) -> int:
    namespace = args.namespace or os.environ.get("WATCH_NAMESPACE") or _own_namespace()
    return await asyncio.to_thread(delete_all, namespace, args.timeout)


def _own_namespace() -> str:
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as f:
            return f.read().strip()
    except OSError:
        return "default"


def delete_all(namespace: str, timeout: float) -> int:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    api = client.CustomObjectsApi()

    def names() -> list[str]:
        found: Any = api.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _request_timeout=REQUEST_TIMEOUT
        )
        return [item["metadata"]["name"] for item in found["items"]]

    queues = names()
    log.info("deleting %d MessageQueue(s) in %s: %s", len(queues), namespace, ", ".join(queues))
    for name in queues:
        try:
            api.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
    deadline = time.monotonic() + timeout
    while (left := names()) and time.monotonic() < deadline:
        time.sleep(1)
    for name in left:
        log.warning(
            "MessageQueue %s/%s was not released by the operator within %.0fs: removing its "
            "finalizer; its Redis data stays, whatever its deletionPolicy",
            namespace,
            name,
            timeout,
        )
        try:
            api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"metadata": {"finalizers": None}},
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
    log.info("no MessageQueue left in %s", namespace)
    return 0
