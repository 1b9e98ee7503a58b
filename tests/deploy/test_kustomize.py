"""The kustomize installs: base, secured (NetworkPolicy component), monitoring and the demo."""
import json
import os
import socket
import subprocess
import tempfile
import time

import pytest
import yaml

from conftest import BINARY, ROOT, kustomize, validate

OVERLAYS = ["deploy/base", "deploy/secured", "deploy/monitoring", "deploy/demo", "deploy/demo/examples"]


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize("directory", OVERLAYS)
def test_every_kustomization_is_valid_for_kubernetes_1_30_to_1_37(directory):
    unknown = validate(kustomize(directory))
    assert set(unknown) <= {"ServiceMonitor", "PrometheusRule", "BucketEncryption"}, unknown


def test_the_base_namespace_enforces_the_restricted_pod_security_standard():
    [namespace] = by_kind(kustomize("deploy/base"), "Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-identity.alibabacloud.com/injection"] == "on"


def restricted_violations(pod_spec):
    """The checks of the restricted Pod Security Standard that a manifest can show."""
    problems = []
    pod_context = pod_spec.get("securityContext", {})
    if pod_context.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile")
    for container in pod_spec["containers"]:
        context = container.get("securityContext", {})
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{container['name']}: allowPrivilegeEscalation")
        if context.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{container['name']}: capabilities.drop")
        if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
            problems.append(f"{container['name']}: runAsNonRoot")
        if context.get("privileged"):
            problems.append(f"{container['name']}: privileged")
    return problems


@pytest.mark.parametrize("directory", ["deploy/base", "deploy/demo"])
def test_every_pod_meets_the_restricted_standard_its_namespace_enforces(directory):
    for deployment in by_kind(kustomize(directory), "Deployment"):
        assert not restricted_violations(deployment["spec"]["template"]["spec"]), deployment["metadata"]["name"]


def test_the_base_keeps_a_replica_through_node_drains():
    objects = kustomize("deploy/base")
    [pdb] = by_kind(objects, "PodDisruptionBudget")
    [deployment] = by_kind(objects, "Deployment")
    assert deployment["spec"]["replicas"] > 1 and pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_network_policy_component_admits_only_prometheus_namespaces_to_the_metrics_port():
    base = kustomize("deploy/base")
    secured = kustomize("deploy/secured")
    assert not by_kind(base, "NetworkPolicy")
    [policy] = by_kind(secured, "NetworkPolicy")
    [deployment] = by_kind(secured, "Deployment")
    assert policy["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    [rule] = policy["spec"]["ingress"]
    ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert [p["port"] for p in rule["ports"]] == ["http-metrics"] and "http-metrics" in ports
    # ACK's Managed Service for Prometheus agent (arms-prom) and kube-prometheus-stack's usual namespace.
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}
                            for name in ("arms-prom", "monitoring")]


def demo():
    objects = kustomize("deploy/demo")
    [service] = [o for o in by_kind(objects, "Service") if o["metadata"]["name"] == "oss-emulator"]
    [emulator] = [o for o in by_kind(objects, "Deployment") if o["metadata"]["name"] == "oss-emulator"]
    [operator] = [o for o in by_kind(objects, "Deployment") if o["metadata"]["name"] == "oss-encryption-operator"]
    [secret] = by_kind(objects, "Secret")
    address = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc:{service['spec']['ports'][0]['port']}"
    return objects, address, emulator, operator, secret


def test_the_demo_points_the_operator_at_the_emulator_service():
    objects, address, emulator, operator, _ = demo()
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--allowed-endpoint-suffixes={address}" in args
    assert f"--kms-endpoint=http://{address}" in args
    assert operator["spec"]["replicas"] == 1
    # Both run the locally built image; the emulator is its second binary.
    for deployment in (emulator, operator):
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "oss-encryption-operator:demo"
    assert emulator["spec"]["template"]["spec"]["containers"][0]["command"] == ["/oss-emulator"]
    examples = [o for o in kustomize("deploy/demo/examples") if o["kind"] == "BucketEncryption"]
    assert examples and all(o["spec"]["endpoint"] == f"http://{address}" for o in examples)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_demo_examples_reconcile_against_the_demo_emulator():
    """The emulator as the demo starts it (its buckets and key) and the examples as the demo
    applies them, through the operator's engine (`apply`), with the demo's credentials."""
    _, address, emulator, _, secret = demo()
    container = emulator["spec"]["template"]["spec"]["containers"][0]
    port = free_port()
    args = [a for a in container["args"] if not a.startswith("--listen=")] + [f"--listen=127.0.0.1:{port}"]
    keys = secret["stringData"]
    env = dict(os.environ, OSS_EMULATOR_ACCESS_KEYS=keys["OSS_EMULATOR_ACCESS_KEYS"])
    server = subprocess.Popen([str(BINARY.parent / "oss-emulator"), *args], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        examples = [o for o in kustomize("deploy/demo/examples") if o["kind"] == "BucketEncryption"]
        local = f"http://127.0.0.1:{port}"
        for example in examples:
            example["spec"]["endpoint"] = local
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as manifest:
            yaml.safe_dump_all(examples, manifest)
            manifest.flush()
            run = subprocess.run(
                [str(BINARY), "apply", "-f", manifest.name, "-o", "json",
                 f"--allowed-endpoint-suffixes=127.0.0.1:{port}", f"--kms-endpoint={local}"],
                env=dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=keys["ALIBABA_CLOUD_ACCESS_KEY_ID"],
                         ALIBABA_CLOUD_ACCESS_KEY_SECRET=keys["ALIBABA_CLOUD_ACCESS_KEY_SECRET"]),
                capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr
        rows = json.loads(run.stdout)["rows"]
        assert sorted(r["resource"] for r in rows) == sorted(f"platform/{o['metadata']['name']}" for o in examples)
        observed = {f"platform/{o['metadata']['name']}" for o in examples
                    if o["spec"].get("managementPolicy") == "Observe"}
        assert observed, "the demo shows an Observe example (reported, never written)"
        assert {r["result"] for r in rows if r["resource"] not in observed} <= {"applied", "no change"}, rows
        for row in rows:
            if row["resource"] in observed:
                assert row["result"] == "no change" or "(Observe: not changed)" in row["result"], row
        assert [r["keyCheck"] for r in rows if r["resource"] == "platform/payments-archive"] == ["usable"]
    finally:
        server.kill()
        server.wait()
