"""The chart's RBAC against what the operator really does: tests/deploy.rs runs the operator
binary (namespaced, with policies, leader election and `--tenancy grants`) against the API test server, which
records every call it makes, and writes them to target/observed-api-access/namespaced-run.json
(`cargo nextest run` before this; scripts/deploy-check runs that test itself)."""
import json

import pytest

from conftest import NAMESPACE, ROOT, render

OBSERVED = ROOT / "target" / "observed-api-access" / "namespaced-run.json"


@pytest.fixture(scope="module")
def observed():
    assert OBSERVED.exists(), f"{OBSERVED} is missing: run `cargo nextest run --test deploy` first"
    rows = json.loads(OBSERVED.read_text())
    assert rows, "the operator made no call"
    return rows


def grants(chart, service_account):
    """(namespace or None for everywhere, rules) for every role bound to the service account."""
    def bound(binding):
        return any(s["kind"] == "ServiceAccount" and s["name"] == service_account and s["namespace"] == NAMESPACE
                   for s in binding["subjects"])

    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o["rules"]
             for o in chart.objects if o["kind"] in ("Role", "ClusterRole")}
    found = []
    for binding in chart.of_kind("ClusterRoleBinding"):
        if bound(binding):
            found.append((None, roles[("ClusterRole", None, binding["roleRef"]["name"])]))
    for binding in chart.of_kind("RoleBinding"):
        if bound(binding):
            namespace = binding["metadata"]["namespace"]
            kind = binding["roleRef"]["kind"]
            key = (kind, namespace if kind == "Role" else None, binding["roleRef"]["name"])
            found.append((namespace, roles[key]))
    return found


def allowed(grants_, group, namespace, resource, verb):
    def matches(values, wanted):
        return wanted in values or "*" in values

    return any(
        (scope is None or scope == namespace)
        and any(matches(r["apiGroups"], group) and matches(r["resources"], resource) and matches(r["verbs"], verb)
                for r in rules)
        for scope, rules in grants_
    )


def service_account(chart):
    return chart.deployment()["spec"]["template"]["spec"]["serviceAccountName"]


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_the_chart_allows_every_call_the_operator_made(observed, mode):
    watched = sorted({row["watchedNamespace"] for row in observed})
    tenancy = {"tenancy": "grants"}
    chart = render({"namespaces": watched, **tenancy} if mode == "namespaced" else tenancy)
    bound = grants(chart, service_account(chart))
    denied = [row for row in observed
              if not allowed(bound, row["group"], row["namespace"], row["resource"], row["verb"])]
    assert not denied, f"{mode} RBAC forbids calls the operator makes: {denied}"


def test_namespaced_rbac_reads_secrets_nowhere_else(observed):
    watched = sorted({row["watchedNamespace"] for row in observed})
    chart = render({"namespaces": watched})
    bound = grants(chart, service_account(chart))
    assert allowed(bound, "", watched[0], "secrets", "get")
    assert allowed(bound, "", NAMESPACE, "secrets", "get"), "a policy's Secret"
    for elsewhere in ("kube-system", "default", "someone-else"):
        assert not allowed(bound, "", elsewhere, "secrets", "get"), elsewhere
        # Policies read every resource (a bucket any resource names is that resource's); only
        # the watched namespaces' resources are ever written.
        assert allowed(bound, "oss.encryption.dev", elsewhere, "bucketencryptions", "list"), elsewhere
        assert not allowed(bound, "oss.encryption.dev", elsewhere, "bucketencryptions", "patch"), elsewhere
    without_policies = grants(
        render({"namespaces": watched, "policies": {"enabled": False}}), service_account(chart)
    )
    for elsewhere in ("kube-system", "default", "someone-else"):
        assert not allowed(without_policies, "oss.encryption.dev", elsewhere, "bucketencryptions", "list")
