"""Shared helpers for the deployment checks (run by scripts/deploy-check, Python 3.12+).

`render` installs the chart with the real Helm engine (helm-sdkpy) into a fake API server and
returns what Helm created; `kustomize` renders a kustomization; `validate` checks objects against
the Kubernetes OpenAPI schemas of several releases (kubernetes-validate, strict)."""
import asyncio
import copy
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from fake_apiserver import FakeApiServer

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "oss-encryption-operator"
RELEASE = "oeo"
# Built by `cargo nextest run`, which scripts/deploy-check follows.
BINARY = ROOT / "target" / "debug" / "oss-encryption-operator"
NAMESPACE = "oss-encryption-operator"
# Every release from the oldest the chart supports to the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = [f"1.{minor}.0" for minor in range(30, 38)]

# Helm keeps release records in memory: the fake server speaks JSON, not the protobuf Helm's
# Secret driver sends. Go reads the environment the process started with, so the caller sets it.
assert os.environ.get("HELM_DRIVER") == "memory", "run with HELM_DRIVER=memory (scripts/deploy-check does)"


class Rendered:
    """One `helm install`: the objects it created (CRDs included), its notes and its manifest."""

    def __init__(self, objects, notes, manifest):
        self.objects = objects
        self.notes = notes
        self.manifest = manifest

    def of_kind(self, kind):
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind, name=None):
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
        return found[0]

    def deployment(self):
        return self.one("Deployment")

    def container(self):
        return self.deployment()["spec"]["template"]["spec"]["containers"][0]

    def args(self):
        return self.container()["args"]


def render(values=None, *, namespace=NAMESPACE, namespace_labels=None, kube_version="v1.33.0", release=RELEASE):
    """Installs the chart with `values` (merged over values.yaml by Helm) and returns it.
    The release namespace exists with `namespace_labels` unless that is None."""
    import helm_sdkpy as helm

    existing = {} if namespace_labels is None else {namespace: namespace_labels}
    api = FakeApiServer(version=kube_version)
    for name, labels in existing.items():
        api.put_namespace(name, labels)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            kubeconfig = os.path.join(scratch, "kubeconfig")
            api.kubeconfig(kubeconfig)
            config = helm.Configuration(namespace=namespace, kubeconfig=kubeconfig)
            release_info = asyncio.run(
                helm.Install(config).run(release, str(CHART), values=copy.deepcopy(values), wait=False)
            )
        objects = [o for o in api.created() if o["kind"] != "Namespace" or o["metadata"]["name"] not in existing]
        return Rendered(objects, release_info.get("info", {}).get("notes", ""), release_info.get("manifest", ""))
    finally:
        api.close()


def render_error(values=None, **kwargs):
    """The message of the install that must fail."""
    import helm_sdkpy as helm

    with pytest.raises(helm.HelmError) as failure:
        render(values, **kwargs)
    return str(failure.value)


def kubectl_kustomize():
    """`kubectl kustomize`, when kubectl is installed (not a registry package: optional)."""
    return shutil.which("kubectl")


def kustomize(directory):
    """Renders a kustomization: the project's small renderer, checked against `kubectl kustomize`
    wherever kubectl exists."""
    from mini_kustomize import build

    objects = build(ROOT / directory)
    kubectl = kubectl_kustomize()
    if kubectl:
        out = subprocess.run([kubectl, "kustomize", str(ROOT / directory)], check=True, capture_output=True, text=True)
        real = [o for o in yaml.safe_load_all(out.stdout) if o]
        canonical = lambda objs: sorted(json.dumps(o, sort_keys=True) for o in objs)
        assert canonical(real) == canonical(objects), (
            f"the project's kustomize renderer and kubectl kustomize disagree on {directory}"
        )
    return objects


def validate(objects, versions=KUBERNETES_VERSIONS):
    """Every object against the strict OpenAPI schema of each Kubernetes version. Kinds that
    Kubernetes does not define (ServiceMonitor) are returned, not silently passed."""
    import kubernetes_validate

    unknown = []
    for version in versions:
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                unknown.append(obj["kind"])
            except kubernetes_validate.ValidationError as error:
                raise AssertionError(
                    f"{obj['kind']} {obj['metadata'].get('name')} is invalid for Kubernetes {version}: {error.message} at {list(error.path)}"
                ) from None
    return sorted(set(unknown))


def write_manifest(path, objects):
    with open(path, "w") as f:
        yaml.safe_dump_all(objects, f, sort_keys=False)
