"""The alerts and the dashboard: the chart's PrometheusRule and the kustomize copy hold the same
rules, which `promtool check rules` accepts and `promtool test rules` (tests/deploy/alerts_test.yaml)
fires and does not fire as each alert means; the chart's dashboard ConfigMap holds
deploy/monitoring/grafana-dashboard.json. That every metric they name is one the operator
exports is checked against a live /metrics by tests/monitoring.rs."""
import json
import shutil
import subprocess

import pytest
import yaml

from conftest import CHART, NAMESPACE, ROOT, kustomize, render, validate

RULES = CHART / "files" / "alerts.yaml"
RULE_TESTS = ROOT / "tests" / "deploy" / "alerts_test.yaml"
DASHBOARD = ROOT / "deploy" / "monitoring" / "grafana-dashboard.json"
FULLNAME = "oeo-oss-encryption-operator"


def promtool():
    found = shutil.which("promtool")
    assert found, "promtool is needed (Debian's prometheus package; .ci/run installs it)"
    return found


def promtool_run(tmp_path, groups, *command):
    """Writes `groups` as alerts.yaml beside a copy of the rule tests and runs promtool there."""
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / "alerts_test.yaml")
    return subprocess.run([promtool(), *command], cwd=tmp_path, capture_output=True, text=True)


def chart_rules(values=None):
    chart = render({"prometheusRule": {"enabled": True}, **(values or {})})
    return chart.one("PrometheusRule")


def kustomize_rules():
    [rule] = [o for o in kustomize("deploy/monitoring") if o["kind"] == "PrometheusRule"]
    return rule


def test_the_chart_renders_no_rules_or_dashboard_unless_asked():
    kinds = {o["kind"] for o in render().objects}
    assert "PrometheusRule" not in kinds
    assert not [o for o in render().of_kind("ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]


def test_the_chart_and_kustomize_render_exactly_the_rules_file():
    source = yaml.safe_load(RULES.read_text())
    rendered = chart_rules()
    assert rendered["spec"] == source
    assert rendered["metadata"]["namespace"] == NAMESPACE
    assert kustomize_rules()["spec"] == source


@pytest.mark.parametrize("where", ["chart", "kustomize"])
def test_promtool_accepts_the_rendered_rules(where, tmp_path):
    spec = (chart_rules() if where == "chart" else kustomize_rules())["spec"]
    run = promtool_run(tmp_path, spec, "check", "rules", "alerts.yaml")
    assert run.returncode == 0, run.stdout + run.stderr
    alerts = {rule["alert"] for group in spec["groups"] for rule in group["rules"]}
    assert alerts == {"OssEncryptionResourcesNotReady", "OssEncryptionDriftCorrections", "OssEncryptionThrottled",
                      "OssEncryptionKmsChecksFailing", "OssEncryptionNoLeader", "OssEncryptionPolicyNonCompliant",
                      "OssEncryptionResourcesNotPermitted", "OssEncryptionObjectsBelowRule"}


@pytest.mark.parametrize("where", ["chart", "kustomize"])
def test_each_rendered_alert_fires_and_holds_back_as_its_rule_tests_say(where, tmp_path):
    spec = (chart_rules() if where == "chart" else kustomize_rules())["spec"]
    run = promtool_run(tmp_path, spec, "test", "rules", "alerts_test.yaml")
    assert run.returncode == 0, run.stdout + run.stderr
    # Every alert has a case that fires it and a moment it stays quiet.
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for alert in {rule["alert"] for group in spec["groups"] for rule in group["rules"]}:
        mine = [case for case in cases if case["alertname"] == alert]
        assert any(case["exp_alerts"] for case in mine), f"{alert} is never expected to fire"
        assert any(not case["exp_alerts"] for case in mine), f"{alert} is never expected to stay quiet"


def test_the_rule_tests_fail_against_wrong_rules(tmp_path):
    # The rule tests can fail: rules whose thresholds are off by far do not pass them.
    spec = yaml.safe_load(RULES.read_text())
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule["expr"] = rule["expr"].replace("> 0", "> 100").replace("< 1)", "< 0)")
    run = promtool_run(tmp_path, spec, "test", "rules", "alerts_test.yaml")
    assert run.returncode != 0
    failed = run.stdout + run.stderr
    for alert in ["OssEncryptionResourcesNotReady", "OssEncryptionDriftCorrections", "OssEncryptionThrottled",
                  "OssEncryptionKmsChecksFailing", "OssEncryptionPolicyNonCompliant", "OssEncryptionResourcesNotPermitted",
                  "OssEncryptionObjectsBelowRule"]:
        assert f"alertname: {alert}," in failed, f"{alert}'s tests pass with a wrong threshold:\n{failed}"


def test_shards_raise_the_expected_leader_count(tmp_path):
    spec = chart_rules({"shards": 3})["spec"]
    [no_leader] = [r for g in spec["groups"] for r in g["rules"] if r["alert"] == "OssEncryptionNoLeader"]
    assert "(oss_encryption_operator_leader) < 3)" in no_leader["expr"]
    tests = {"rule_files": ["alerts.yaml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": f'oss_encryption_operator_leader{{namespace="ops",job="m",pod="{pod}"}}',
                          "values": value} for pod, value in [("a", "1x20"), ("b", "1x20"), ("c", "0x20")]],
        "alert_rule_test": [{"eval_time": "10m", "alertname": "OssEncryptionNoLeader", "exp_alerts": [{
            "exp_labels": {"severity": "critical", "namespace": "ops", "job": "m"},
            "exp_annotations": {"summary": no_leader["annotations"]["summary"],
                                "description": no_leader["annotations"]["description"]
                                .replace("{{ $labels.namespace }}", "ops").replace("{{ $labels.job }}", "m")}}]}],
    }]}
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "shards_test.yaml").write_text(yaml.safe_dump(tests))
    run = subprocess.run([promtool(), "test", "rules", "shards_test.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_rule_labels_and_additional_rules_render_in_a_group_of_their_own(tmp_path):
    extra = [{"alert": "OssEncryptionOperatorDown", "expr": 'up{job="oeo-oss-encryption-operator-metrics"} == 0',
              "for": "5m", "labels": {"severity": "critical"}}]
    rule = chart_rules({"prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"},
                                            "additionalRules": extra}})
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"]["groups"][:-1] == yaml.safe_load(RULES.read_text())["groups"]
    assert rule["spec"]["groups"][-1] == {"name": "oss-encryption-operator-additional", "rules": extra}
    run = promtool_run(tmp_path, rule["spec"], "check", "rules", "alerts.yaml")
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_dashboard_configmap_holds_the_dashboard_file_with_the_sidecar_label():
    chart = render({"grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Operators"}}})
    configmap = chart.one("ConfigMap", f"{FULLNAME}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"]["grafana_folder"] == "Operators"
    assert configmap["metadata"]["namespace"] == NAMESPACE
    assert json.loads(configmap["data"]["oss-encryption-operator.json"]) == json.loads(DASHBOARD.read_text())
    assert (CHART / "files" / "grafana-dashboard.json").read_bytes() == DASHBOARD.read_bytes()
    other = render({"grafanaDashboard": {"enabled": True, "namespace": "grafana", "labels": {"dashboards": "ops"}}})
    moved = other.one("ConfigMap", f"{FULLNAME}-dashboard")
    assert moved["metadata"]["namespace"] == "grafana"
    assert moved["metadata"]["labels"]["dashboards"] == "ops"
    assert validate([configmap, moved]) == []


def test_the_dashboard_has_a_panel_for_each_concern():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for metric in ["objects", "drift_corrections_total", "oss_requests_total", "oss_throttles_total",
                   "oss_request_duration_seconds_bucket", "kms_requests_total", "reconciles_total", "leader"]:
        assert f"oss_encryption_operator_{metric}{{" in exprs, metric
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
