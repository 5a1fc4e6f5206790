"""Writes charts/conveyor/README.md from values.yaml: every key with its `# --` comment and
default. `python hack/chart_readme.py --check` fails if the README is stale or a key has no
comment (CI runs it through tests/cluster/test_chart_renders.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "conveyor"

HEAD = """# Conveyor Helm chart

Reliable factory telemetry from MQTT into processing on Kubernetes: the MessageQueue CRD, the
operator that sizes one worker Deployment per queue, the MQTT ingestor (a StatefulSet, so each
replica keeps its MQTT client id and session), the gateway, and for development an in-chart
Redis (AOF on) and Mosquitto (persistence on, up to `mqtt.maxQueuedBytes` queued per session).

```console
helm install conveyor charts/conveyor -n conveyor --create-namespace
kubectl get mq -n conveyor
```

The CRD is in `crds/`: helm installs it with the chart and never deletes it. Helm never
upgrades `crds/` either, so `helm upgrade` first runs a pre-upgrade hook (`conveyor apply-crds`,
as a ServiceAccount that may only get and patch these CRDs by name) that applies them, unless
`crds.upgrade` is false; then `kubectl apply --server-side -f crds/` yourself.
`helm uninstall` first runs a pre-delete hook (`conveyor delete-messagequeues`, as a
ServiceAccount of its own) that deletes the
MessageQueues in the release's namespace while the operator still runs, so that none is left
held by its finalizer; their Redis data stays unless a queue says `deletionPolicy: Delete`.
With `operator.clusterWide`, delete the queues of other namespaces first. Secrets are
referenced by name (`existingSecret` keys), never given as values. `values.schema.json`
rejects unknown keys, so a typo fails the install.

## Values

Generated from `values.yaml` by `hack/chart_readme.py`.

| key | default | description |
| --- | --- | --- |
"""


def rows() -> list[str]:
    lines = (CHART / "values.yaml").read_text().splitlines()
    values = yaml.safe_load("\n".join(lines))
    out, missing, stack, comment = [], [], [], ""
    covered: tuple[str, ...] | None = None  # a commented mapping documents its children
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = stripped[4:].strip()
            continue
        if not stripped or stripped.startswith("#") or stripped.startswith("- "):
            continue
        indent = (len(line) - len(line.lstrip())) // 2
        key = stripped.split(":", 1)[0]
        stack = [*stack[:indent], key]
        if (
            covered is not None
            and tuple(stack[: len(covered)]) == covered
            and len(stack) > len(covered)
        ):
            comment = ""
            continue
        covered = None
        node = values
        for part in stack:
            node = node[part]
        leaf = not isinstance(node, dict) or not node or stripped.endswith("}")
        if comment and isinstance(node, dict):
            covered = tuple(stack)
        if leaf or comment:
            path = ".".join(stack)
            if not comment:
                missing.append(path)
            shown = (
                yaml.safe_dump(node, default_flow_style=True, width=10_000)
                .strip()
                .removesuffix("...")
                .strip()
            )
            out.append(f"| `{path}` | `{shown}` | {comment} |")
        comment = ""
    if missing:
        sys.exit(f"values without a '# --' comment: {', '.join(missing)}")
    return out


def main() -> None:
    text = HEAD + "\n".join(rows()) + "\n"
    readme = CHART / "README.md"
    if "--check" in sys.argv:
        if readme.read_text() != text:
            sys.exit("charts/conveyor/README.md is stale: run python hack/chart_readme.py")
        return
    readme.write_text(text)


if __name__ == "__main__":
    main()
