"""The Helm chart, rendered by the real Helm engine (helm install into a fake API server)."""
import asyncio
import functools
import subprocess
import sys

import pytest

from conftest import BINARY, CHART, KUBERNETES_VERSIONS, NAMESPACE, RELEASE, render, render_error, validate

STANDARD_LABELS = ["helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/version", "app.kubernetes.io/managed-by"]
FULLNAME = f"{RELEASE}-oss-encryption-operator"

# Every documented option switched on at once (the "everything" install).
EVERYTHING = {
    "image": {"digest": "sha256:" + "a" * 64},
    "imagePullSecrets": [{"name": "regcred"}],
    "namespaces": ["team-a", "team-b"],
    "labelSelector": "encryption=managed",
    "oss": {"qps": 1000000, "burst": 1000000, "qpsMode": "fixed"},
    "kms": {"qps": 0.5, "network": "vpc", "cacheTTL": "90s", "preflight": False},
    "concurrency": 64,
    "rrsa": {"roleName": "oss-operator"},
    "serviceAccount": {"name": "oss-operator", "annotations": {"example.com/owner": "platform"}},
    "extraArgs": ["--deletion-timeout=10m"],
    "extraEnv": [{"name": "ALIBABA_CLOUD_ACCESS_KEY_ID",
                  "valueFrom": {"secretKeyRef": {"name": "oss-operator-credentials", "key": "accessKeyId"}}}],
    "envFrom": [{"secretRef": {"name": "oss-operator-credentials"}}],
    "podLabels": {"team": "platform"},
    "podAnnotations": {"example.com/owner": "platform"},
    "priorityClassName": "system-cluster-critical",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "platform", "effect": "NoSchedule"}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                           "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "oss-encryption-operator"}}}}]}},
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "ScheduleAnyway",
                                   "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "{{ .Release.Name }}"}}}],
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "interval": "1m"},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"},
                       "additionalRules": [{"alert": "OssEncryptionOperatorDown", "expr": "up == 0", "for": "5m"}]},
    "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Operators"}},
    "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]},
}
RRSA_LABELS = {"pod-identity.alibabacloud.com/injection": "on"}

# The documented combinations, each checked against the Kubernetes schemas.
COMBINATIONS = {
    "defaults": {},
    "everything": EVERYTHING,
    "single replica without leader election": {"replicas": 1, "leaderElection": {"enabled": False}},
    "namespaced without policies": {"namespaces": ["team-a"], "policies": {"enabled": False}},
    "namespaced watching the release namespace and default": {"namespaces": [NAMESPACE, "default"]},
    "network policy with the default scrapers": {"networkPolicy": {"enabled": True}},
    "network policy without scrapers": {"networkPolicy": {"enabled": True, "metricsFrom": []}},
    "no PDB": {"podDisruptionBudget": {"enabled": False}},
    "three replicas": {"replicas": 3},
    "two shards": {"shards": 2},
    "three namespaced shards without leader election": {
        "shards": 3, "replicas": 1, "leaderElection": {"enabled": False}, "namespaces": ["team-a"],
    },
    "tenancy grants with grants": {"tenancy": "grants", "allowOperatorCredentials": False, "grants": [
        {"name": "team-payments", "namespaces": ["payments", "payments-staging"],
         "buckets": ["payments-*", "audit-logs-payments"]},
        {"name": "team-web", "namespaces": ["web"], "buckets": ["web-?-assets"], "operatorCredentials": "Allow"},
    ]},
    "grants before switching tenancy": {"grants": [
        {"name": "team-payments", "namespaces": ["payments"], "buckets": ["payments-*"]}]},
    "namespaced tenancy grants": {"namespaces": ["payments"], "tenancy": "grants",
                                  "grants": [{"name": "payments", "namespaces": ["payments"], "buckets": ["*"]}]},
    "an existing ServiceAccount, no aggregated roles": {
        "serviceAccount": {"create": False, "name": "made-elsewhere"}, "aggregatedRoles": False},
}


@functools.lru_cache(maxsize=None)
def rendered(name):
    """One install per combination, shared by the tests that only read it."""
    labels = RRSA_LABELS if COMBINATIONS[name].get("rrsa") else {}
    return render(COMBINATIONS[name], namespace_labels=labels)


@pytest.mark.parametrize("name", COMBINATIONS)
def test_every_documented_combination_is_valid_for_kubernetes_1_30_to_1_37(name):
    assert KUBERNETES_VERSIONS[0] == "1.30.0" and KUBERNETES_VERSIONS[-1] == "1.37.0"
    objects = rendered(name).objects
    unknown = validate(objects)
    assert set(unknown) <= {"ServiceMonitor", "PrometheusRule", "BucketEncryptionGrant"}, unknown
    for grant in [o for o in objects if o["kind"] == "BucketEncryptionGrant"]:
        assert_valid_grant(grant)


@pytest.mark.parametrize("name", COMBINATIONS)
def test_the_operator_binary_accepts_the_rendered_arguments(name):
    # clap validates every argument before --help stops it: a value it cannot parse fails here.
    for deployment in rendered(name).of_kind("Deployment"):
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        run = subprocess.run([str(BINARY), *args, "--help"], capture_output=True, text=True)
        assert run.returncode == 0, f"{args}: {run.stderr}"


@pytest.mark.parametrize("name", COMBINATIONS)
def test_every_object_carries_the_standard_labels(name):
    for obj in rendered(name).objects:
        if obj["kind"] == "CustomResourceDefinition":
            continue  # crds/ are not templated: Helm installs them verbatim
        labels = obj["metadata"].get("labels", {})
        missing = [label for label in STANDARD_LABELS if label not in labels]
        assert not missing, f"{obj['kind']} {obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == RELEASE


def test_defaults_render_the_operator_with_leader_election_and_a_pdb():
    chart = render()
    kinds = sorted(o["kind"] for o in chart.objects)
    assert kinds == sorted([
        "CustomResourceDefinition", "CustomResourceDefinition", "CustomResourceDefinition", "ServiceAccount", "ClusterRole",
        "ClusterRole", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service", "PodDisruptionBudget",
    ])
    assert chart.deployment()["spec"]["replicas"] == 2
    assert "--leader-election" in chart.args()
    assert f"--leader-election-lease={FULLNAME}" in chart.args()
    assert chart.container()["image"] == "ghcr.io/oss-encryption-operator/oss-encryption-operator:0.1.0"
    pdb = chart.one("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == chart.deployment()["spec"]["selector"]["matchLabels"]
    assert "Helm never upgrades CustomResourceDefinitions" in chart.notes


def test_cluster_scoped_names_are_prefixed_with_the_chart_name():
    chart = render()
    assert chart.one("ClusterRoleBinding")["metadata"]["name"] == FULLNAME
    assert sorted(o["metadata"]["name"] for o in chart.of_kind("ClusterRole")) == [
        FULLNAME, f"{FULLNAME}-edit", f"{FULLNAME}-view"]
    assert chart.one("ClusterRoleBinding")["roleRef"]["name"] == FULLNAME
    # A release already named after the chart is not doubled.
    named = render(release="oss-encryption-operator")
    assert named.one("ClusterRole", "oss-encryption-operator")


def test_large_and_fractional_numbers_render_as_the_binary_parses_them():
    args = render(EVERYTHING, namespace_labels=RRSA_LABELS).args()
    assert "--oss-qps=1000000" in args
    assert "--oss-burst=1000000" in args
    assert "--concurrency=64" in args
    assert "--kms-qps=0.5" in args
    assert not [a for a in args if "e+" in a], args


def test_numbers_set_as_integers_render_the_same():
    # `--set oss.burst=1000000` arrives as an int64, values files as float64.
    args = render({"oss": {"burst": 2500000, "qps": 12.5}}).args()
    assert "--oss-burst=2500000" in args
    assert "--oss-qps=12.5" in args


def test_two_replicas_without_leader_election_fail_the_render():
    message = render_error({"leaderElection": {"enabled": False}})
    assert "replicas: 2 needs leaderElection.enabled: true" in message


def test_one_replica_without_leader_election_has_no_lease_rbac_and_no_pdb():
    chart = render(COMBINATIONS["single replica without leader election"])
    assert chart.deployment()["spec"]["replicas"] == 1
    assert not [a for a in chart.args() if a.startswith("--leader-election")]
    assert not chart.of_kind("PodDisruptionBudget")
    assert not [r for r in chart.of_kind("Role") if r["metadata"]["name"].endswith("leader-election")]


def rules_by_resource(role):
    return {resource: sorted(rule["verbs"]) for rule in role["rules"] for resource in rule["resources"]}


def test_cluster_wide_rbac_is_exactly_the_verbs_used():
    chart = render()
    assert rules_by_resource(chart.one("ClusterRole", FULLNAME)) == {
        "bucketencryptions": ["get", "list", "patch", "watch"],
        "bucketencryptions/status": ["patch"],
        "bucketencryptionpolicies": ["get", "list", "watch"],
        "bucketencryptionpolicies/status": ["patch"],
        "secrets": ["get"],
        "events": ["create", "patch"],
        "customresourcedefinitions": ["get"],
    }
    assert_reads_only_its_crd(chart.one("ClusterRole", FULLNAME))
    lease = chart.one("Role", f"{FULLNAME}-leader-election")
    assert lease["metadata"]["namespace"] == NAMESPACE
    assert rules_by_resource(lease) == {"leases": ["create", "get", "patch"]}


def test_watching_namespaces_grants_secrets_only_there():
    chart = render({"namespaces": ["team-a", "team-b"]})
    cluster_role = chart.one("ClusterRole", FULLNAME)
    assert rules_by_resource(cluster_role) == {
        "bucketencryptionpolicies": ["get", "list", "watch"],
        "bucketencryptionpolicies/status": ["patch"],
        "customresourcedefinitions": ["get"],
        # Policy precedence reads every resource's bucket, whatever the operator watches.
        "bucketencryptions": ["list", "watch"],
    }, "only the cluster-scoped policies, what they read and the CRD read stay cluster-wide"
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in chart.of_kind("Role")}
    for namespace in ("team-a", "team-b"):
        role = roles[(namespace, FULLNAME)]
        assert rules_by_resource(role) == {
            "bucketencryptions": ["get", "list", "patch", "watch"],
            "bucketencryptions/status": ["patch"],
            "secrets": ["get"],
            "events": ["create", "patch"],
        }
        [binding] = [b for b in chart.of_kind("RoleBinding")
                     if b["metadata"]["namespace"] == namespace and b["metadata"]["name"] == FULLNAME]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    # Policies read their Secret in the release namespace and report Events in `default`.
    assert rules_by_resource(roles[(NAMESPACE, f"{FULLNAME}-policies")]) == {"secrets": ["get"]}
    assert rules_by_resource(roles[("default", f"{FULLNAME}-policies")]) == {"events": ["create", "patch"]}
    assert "--namespace=team-a" in chart.args() and "--namespace=team-b" in chart.args()


GRANT_RULES = {
    "bucketencryptiongrants": ["get", "list", "watch"],
    "bucketencryptiongrants/status": ["patch"],
}


def assert_valid_grant(grant):
    """A rendered grant against the grant CRD's schema (kubernetes-validate knows no CRDs)."""
    import re

    import yaml

    crd = yaml.safe_load((CHART / "crds" / "bucketencryptiongrant.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert grant["apiVersion"] == "oss.encryption.dev/v1alpha1"
    assert set(grant["spec"]) <= set(schema["properties"]), grant["spec"]
    for field in schema["required"]:
        values = grant["spec"][field]
        items = schema["properties"][field]
        assert len(values) >= items["minItems"], (field, values)
        for value in values:
            assert isinstance(value, str) and re.fullmatch(items["items"]["pattern"], value), (field, value)
    assert grant["spec"]["operatorCredentials"] in schema["properties"]["operatorCredentials"]["enum"]


def test_tenancy_grants_renders_the_grants_the_flag_and_their_rbac():
    chart = rendered("tenancy grants with grants")
    assert "--tenancy=grants" in chart.args() and "--allow-operator-credentials=false" in chart.args()
    grants = {g["metadata"]["name"]: g["spec"] for g in chart.of_kind("BucketEncryptionGrant")}
    assert grants == {
        "team-payments": {"namespaces": ["payments", "payments-staging"],
                          "buckets": ["payments-*", "audit-logs-payments"], "operatorCredentials": "Deny"},
        "team-web": {"namespaces": ["web"], "buckets": ["web-?-assets"], "operatorCredentials": "Allow"},
    }, "operatorCredentials defaults to Deny"
    rules = rules_by_resource(chart.one("ClusterRole", FULLNAME))
    assert {r: rules[r] for r in GRANT_RULES} == GRANT_RULES


def test_grants_render_before_the_switch_and_open_tenancy_needs_no_grant_rbac():
    chart = rendered("grants before switching tenancy")
    assert "--tenancy=open" in chart.args()
    assert [g["metadata"]["name"] for g in chart.of_kind("BucketEncryptionGrant")] == ["team-payments"]
    assert not set(GRANT_RULES) & set(rules_by_resource(chart.one("ClusterRole", FULLNAME)))
    assert not rendered("defaults").of_kind("BucketEncryptionGrant")


def test_namespaced_tenancy_grants_reads_grants_cluster_wide():
    chart = rendered("namespaced tenancy grants")
    rules = rules_by_resource(chart.one("ClusterRole", FULLNAME))
    assert {r: rules[r] for r in GRANT_RULES} == GRANT_RULES, "grants are cluster-scoped"
    # Resources are written in the watched namespaces only; cluster-wide they are only read,
    # for policy precedence.
    assert rules["bucketencryptions"] == ["list", "watch"]


def test_grant_values_outside_the_schema_fail_the_install():
    good = {"name": "g", "namespaces": ["payments"], "buckets": ["payments-*"]}
    assert "tenancy" in render_error({"tenancy": "closed"})
    for bad in ({**good, "namespaces": []}, {**good, "buckets": ["-payments"]}, {**good, "buckets": ["Pay*"]},
                {**good, "operatorCredentials": "Yes"}, {"name": "g", "buckets": ["x"]}, {**good, "typo": 1}):
        assert "grants" in render_error({"grants": [bad]}), bad


def assert_reads_only_its_crd(cluster_role):
    [rule] = [r for r in cluster_role["rules"] if "customresourcedefinitions" in r["resources"]]
    assert rule["resourceNames"] == ["bucketencryptions.oss.encryption.dev"], "one CRD, by name"


def test_each_shard_is_a_deployment_with_its_own_flags_selector_and_pdb():
    chart = render(COMBINATIONS["two shards"])
    deployments = {d["metadata"]["name"]: d for d in chart.of_kind("Deployment")}
    assert sorted(deployments) == [f"{FULLNAME}-shard-0", f"{FULLNAME}-shard-1"]
    for index, name in enumerate(sorted(deployments)):
        spec = deployments[name]["spec"]
        args = spec["template"]["spec"]["containers"][0]["args"]
        assert f"--shard-index={index}" in args and "--shard-count=2" in args, args
        # Each shard elects its own leader (the binary derives the shard's Lease from this name);
        # the policy Lease is shared, so exactly one pod of all shards passes policies.
        assert f"--leader-election-lease={FULLNAME}" in args
        assert f"--policy-lease={FULLNAME}-policies" in args
        selector = spec["selector"]["matchLabels"]
        assert selector["oss.encryption.dev/shard"] == str(index)
        assert spec["template"]["metadata"]["labels"]["oss.encryption.dev/shard"] == str(index)
        [pdb] = [p for p in chart.of_kind("PodDisruptionBudget") if p["metadata"]["name"] == name]
        assert pdb["spec"]["selector"]["matchLabels"] == selector
    # The metrics Service reaches every shard's pods.
    service_selector = chart.one("Service")["spec"]["selector"]
    assert "oss.encryption.dev/shard" not in service_selector
    unsharded = render()
    assert [d["metadata"]["name"] for d in unsharded.of_kind("Deployment")] == [FULLNAME]
    assert not [a for a in unsharded.args() if a.startswith("--shard")]


def test_namespaced_rbac_without_policies_only_reads_the_crd_cluster_wide():
    chart = render(COMBINATIONS["namespaced without policies"])
    cluster_role = chart.one("ClusterRole", FULLNAME)
    assert rules_by_resource(cluster_role) == {"customresourcedefinitions": ["get"]}
    assert_reads_only_its_crd(cluster_role)
    assert chart.one("ClusterRoleBinding")["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert not [r for r in chart.of_kind("Role") if r["metadata"]["name"].endswith("-policies")]
    assert "--enable-policies=false" in chart.args()


def test_watched_namespaces_that_already_hold_the_policy_grants_get_no_duplicates():
    chart = render(COMBINATIONS["namespaced watching the release namespace and default"])
    assert not [r for r in chart.of_kind("Role") if r["metadata"]["name"].endswith("-policies")]


def test_network_policy_admits_only_the_listed_scrapers_to_the_metrics_port():
    chart = render({"networkPolicy": EVERYTHING["networkPolicy"]})
    policy = chart.one("NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == chart.deployment()["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
    assert rule["from"] == EVERYTHING["networkPolicy"]["metricsFrom"]
    closed = render(COMBINATIONS["network policy without scrapers"]).one("NetworkPolicy")
    assert closed["spec"]["ingress"] == []
    # The default admits the namespaces Prometheus usually runs in: ACK's Managed Service for
    # Prometheus agent (arms-prom), kube-prometheus-stack's monitoring; the same as kustomize's.
    [default] = render(COMBINATIONS["network policy with the default scrapers"]).one("NetworkPolicy")["spec"]["ingress"]
    assert default["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}
                               for name in ("arms-prom", "monitoring")]
    assert "without authentication" not in chart.notes
    assert "without authentication" in render().notes


def test_every_pod_option_reaches_the_pod():
    chart = render(EVERYTHING, namespace_labels=RRSA_LABELS)
    pod = chart.deployment()["spec"]["template"]
    spec = pod["spec"]
    assert chart.container()["image"] == "ghcr.io/oss-encryption-operator/oss-encryption-operator@sha256:" + "a" * 64
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["nodeSelector"] == EVERYTHING["nodeSelector"]
    assert spec["tolerations"] == EVERYTHING["tolerations"]
    assert spec["affinity"] == EVERYTHING["affinity"]
    assert spec["priorityClassName"] == "system-cluster-critical"
    [spread] = spec["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"] == {"app.kubernetes.io/instance": RELEASE}, "templated"
    assert pod["metadata"]["labels"]["team"] == "platform"
    assert pod["metadata"]["annotations"] == EVERYTHING["podAnnotations"]
    container = chart.container()
    assert EVERYTHING["extraEnv"][0] in container["env"]
    assert container["envFrom"] == EVERYTHING["envFrom"]
    assert "--deletion-timeout=10m" in container["args"]
    assert "--label-selector=encryption=managed" in container["args"]
    monitor = chart.one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["interval"] == "1m"
    account = chart.one("ServiceAccount")
    assert account["metadata"]["annotations"]["pod-identity.alibabacloud.com/role-name"] == "oss-operator"


def test_values_outside_the_schema_fail_the_install():
    assert "replica" in render_error({"replica": 3})  # a typo of replicas
    assert "qps" in render_error({"oss": {"qps": "fast"}})
    assert "qpsMode" in render_error({"oss": {"qpsMode": "turbo"}})
    assert "resyncInterval" in render_error({"resyncInterval": "5 minutes"})
    assert "digest" in render_error({"image": {"digest": "latest"}})


def test_rrsa_in_a_namespace_without_the_injection_label_fails_with_the_command_to_fix_it():
    message = render_error({"rrsa": {"roleName": "oss-operator"}}, namespace_labels={})
    assert f"kubectl label namespace {NAMESPACE} pod-identity.alibabacloud.com/injection=on" in message


def test_rrsa_with_create_namespace_tells_how_to_label_it_afterwards():
    # `helm install --create-namespace`: the namespace does not exist yet when Helm renders.
    chart = render({"rrsa": {"roleName": "oss-operator"}}, namespace_labels=None)
    assert f"kubectl label namespace {NAMESPACE} pod-identity.alibabacloud.com/injection=on" in chart.notes
    assert f"rollout restart deployment/{FULLNAME}" in chart.notes
    labelled = render({"rrsa": {"roleName": "oss-operator"}}, namespace_labels=RRSA_LABELS)
    assert "kubectl label namespace" not in labelled.notes


@pytest.mark.parametrize("version", ["v1.30.0", "v1.33.0", "v1.37.0"])
def test_supported_kubernetes_versions_install(version):
    assert render(kube_version=version).deployment()


def test_kubernetes_older_than_1_30_is_refused():
    message = render_error(kube_version="v1.29.0")
    assert "kubeVersion: >=1.30.0-0 which is incompatible with Kubernetes v1.29.0" in message


def test_helm_lint_finds_no_error():
    import helm_sdkpy as helm

    result = asyncio.run(helm.Lint(helm.Configuration(namespace=NAMESPACE)).run(str(CHART)))
    assert not result.get("Errors"), result
    # Severity 1 is INFO (the chart has no icon: the project has no logo yet).
    assert max(m["Severity"] for m in result["Messages"]) <= 1, result


def test_the_chart_crds_are_the_generated_ones():
    for name in ("bucketencryption.yaml", "bucketencryptionpolicy.yaml"):
        assert (CHART / "crds" / name).read_text() == (CHART.parents[2] / "crds" / name).read_text()


def test_the_chart_readme_lists_every_value_as_values_yaml_documents_it():
    run = subprocess.run([sys.executable, str(CHART.parents[2] / "scripts" / "chart-readme"), "--check"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    readme = (CHART / "README.md").read_text()
    for line in (CHART / "values.yaml").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            assert f"| `{line.split(':')[0]}" in readme, f"{line} is not documented"


def test_service_account_name_annotations_and_an_existing_one():
    chart = render({"serviceAccount": {"name": "oss-operator", "annotations": {"example.com/role": "r"}},
                    "rrsa": {"roleName": "oss-operator"}}, namespace_labels=RRSA_LABELS)
    account = chart.one("ServiceAccount", "oss-operator")
    annotations = account["metadata"]["annotations"]
    assert annotations["example.com/role"] == "r"
    assert annotations["pod-identity.alibabacloud.com/role-name"] == "oss-operator"
    assert chart.deployment()["spec"]["template"]["spec"]["serviceAccountName"] == "oss-operator"
    binding = chart.one("ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "oss-operator", "namespace": NAMESPACE}]
    existing = render({"serviceAccount": {"create": False, "name": "made-elsewhere"}})
    assert existing.of_kind("ServiceAccount") == []
    assert existing.deployment()["spec"]["template"]["spec"]["serviceAccountName"] == "made-elsewhere"


def test_aggregated_roles_let_namespace_users_view_and_edit_bucket_encryptions():
    chart = render()
    view = chart.one("ClusterRole", f"{FULLNAME}-view")
    edit = chart.one("ClusterRole", f"{FULLNAME}-edit")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert rules_by_resource(view) == {"bucketencryptions": ["get", "list", "watch"],
                                       "bucketencryptions/status": ["get", "list", "watch"]}
    assert rules_by_resource(edit) == {"bucketencryptions": ["create", "delete", "deletecollection", "patch", "update"]}
    assert [o["metadata"]["name"] for o in render({"aggregatedRoles": False}).of_kind("ClusterRole")] == [FULLNAME]


@pytest.mark.parametrize("flag", ["--resync-interval=10s", "--namespace=x", "--leader-election"])
def test_extra_args_repeating_a_chart_flag_fail_the_render(flag):
    message = render_error({"extraArgs": [flag]})
    assert "extraArgs repeats " + flag.split("=")[0] in message, message


# (resyncInterval, whether the binary takes it for --resync-interval): its parser
# (api::parse_duration: numbers with a unit each, fractions allowed) and its bounds, 30s to 24h.
RESYNC_TABLE = [
    ("30s", True), ("90s", True), ("5m", True), ("1m30s", True), ("2h", True), ("1.5h", True),
    ("0h5m", True), ("0.5m", True), ("30000ms", True), ("24h", True), ("23h59m60s", True), ("1440m", True),
    (".5h", True), ("5.m", True), ("1h.5m", True), ("0005m", True),
    ("10s", False), ("29s", False), ("0s", False), ("500ms", False), ("29999ms", False), ("0.49m", False),
    ("25h", False), ("24h1s", False), ("86401s", False), ("1d", False), ("5", False), ("", False),
    ("5 m", False), ("-5m", False), ("1e3s", False), ("1.2.3s", False), (".s", False), ("5M", False),
    ("1h30", False), ("PT5M", False), ("99999999999999999999999h", False),
]


@pytest.mark.parametrize("interval,accepted", RESYNC_TABLE)
def test_the_chart_accepts_exactly_the_resync_intervals_the_binary_accepts(interval, accepted):
    binary = subprocess.run([str(BINARY), "run", f"--resync-interval={interval}", "--help"],
                            capture_output=True, text=True)
    assert (binary.returncode == 0) == accepted, f"the binary on {interval!r}: {binary.stderr}"
    if accepted:
        args = render({"resyncInterval": interval}).args()
        assert f"--resync-interval={interval}" in args
        rendered = subprocess.run([str(BINARY), *args, "--help"], capture_output=True, text=True)
        assert rendered.returncode == 0, f"{interval}: {rendered.stderr}"
    else:
        assert "resyncInterval" in render_error({"resyncInterval": interval})


@pytest.mark.parametrize("ttl,accepted", [("1m", True), ("0s", True), ("1.5h", True), ("24h", True),
                                          ("24h1s", False), ("25h", False), ("1d", False)])
def test_the_chart_accepts_exactly_the_kms_cache_ttls_the_binary_accepts(ttl, accepted):
    binary = subprocess.run([str(BINARY), "run", f"--kms-cache-ttl={ttl}", "--help"], capture_output=True, text=True)
    assert (binary.returncode == 0) == accepted, f"the binary on {ttl!r}: {binary.stderr}"
    if accepted:
        assert f"--kms-cache-ttl={ttl}" in render({"kms": {"cacheTTL": ttl}}).args()
    else:
        message = render_error({"kms": {"cacheTTL": ttl}})
        assert "kms.cacheTTL" in message or "/kms/cacheTTL" in message, message


@pytest.mark.parametrize("interval,accepted", [("30s", True), ("1m30s", True), ("1.5m", False), ("90", False)])
def test_the_service_monitor_interval_takes_prometheus_durations_only(interval, accepted):
    values = {"serviceMonitor": {"enabled": True, "interval": interval}}
    if accepted:
        assert render(values).one("ServiceMonitor")["spec"]["endpoints"][0]["interval"] == interval
    else:
        assert "interval" in render_error(values)
