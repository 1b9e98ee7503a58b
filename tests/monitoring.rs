//! The shipped alerts (`deploy/monitoring/prometheusrule.yaml`, the chart's `files/alerts.yaml`)
//! and the Grafana dashboard (`deploy/monitoring/grafana-dashboard.json`) name only metrics the
//! operator exports: every metric name in every alert expression and dashboard query (template
//! variables included) is a series of a family on a live `/metrics` of a running controller.
//! That the rules are valid and fire as meant is `promtool`'s part (tests/deploy/test_monitoring.py).

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use std::time::Duration;

use oss_encryption_operator::emulator::KmsKey;
use oss_encryption_operator::kms::{KeyChecker, KmsClient, KmsConfig};
use serde_json::{Value, json};
use support::operator::{Harness, NAMESPACE};
use support::oss::{REGION, fast_retries};
use support::policy::{create_policy, wait_status};

/// PromQL words that read like metric names but are not: aggregation operators (which may
/// take `by (...)` before their parenthesis), binary-operator keywords and the literals.
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
    "start",
    "end",
];
/// Keywords followed by a parenthesised list of label names, not expressions.
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names a PromQL expression (or a Grafana `label_values(metric, label)` query)
/// selects, read conservatively: string literals, label matchers `{...}`, ranges and
/// subqueries `[...]` and label lists after `by`/`without`/`on`/`ignoring`/`group_*` are
/// skipped; an identifier followed by `(` is a function; keywords and numbers are dropped.
/// Whatever else looks like an identifier is taken for a metric name.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |from: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        let mut j = from;
        let mut quote = None;
        while j < chars.len() {
            let c = chars[j];
            match quote {
                Some(_) if c == '\\' => j += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
                None if c == open => depth += 1,
                None if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return j + 1;
                    }
                }
                None => {}
            }
            j += 1;
        }
        panic!("unbalanced {open}{close} in {expr}");
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != c {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            i = j + 1;
        } else if c == '{' {
            i = skip_to(i, '{', '}');
        } else if c == '[' {
            i = skip_to(i, '[', ']');
        } else if c.is_ascii_digit() || c == '.' {
            // Numbers, durations (5m) and exponents (1e3) are no names.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c == '$' {
            // Grafana variables ($__rate_interval, ${datasource}).
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_{}".contains(chars[i])) {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            if LABEL_LISTS.contains(&word.as_str()) && called {
                i = skip_to(next, '(', ')');
            } else if !called && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The series names `/metrics` exports: each family declared by `# TYPE` with the sample
/// names of its type (counter `x` → `x_total`, histogram `x` → `x_bucket`, `x_sum`, `x_count`),
/// and every sample name present.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let (family, kind) = declared.split_once(' ').expect("# TYPE name kind");
            match kind {
                "counter" => {
                    names.insert(format!("{family}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{family}{suffix}"));
                    }
                }
                _ => {
                    names.insert(family.to_owned());
                }
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (where, expression) of every alert and recording rule in a rule-groups document.
fn rule_exprs(source: &str, groups: &Value) -> Vec<(String, String)> {
    let groups = groups["groups"].as_array().expect("rule groups");
    let rules: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .collect();
    assert!(!rules.is_empty(), "{source} has no rules");
    rules
        .into_iter()
        .map(|rule| {
            let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
            (
                format!("{source} {name}"),
                rule["expr"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// (where, query) of every panel target (rows' nested panels included) and every query variable.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for panel in list.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push((
                    format!("panel {title:?}"),
                    target["expr"].as_str().expect("a PromQL target").to_owned(),
                ));
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if variable["type"] == "query" {
            let query = variable["query"]["query"]
                .as_str()
                .or(variable["query"].as_str())
                .unwrap();
            out.push((format!("variable {}", variable["name"]), query.to_owned()));
        }
    }
    out
}

#[test]
fn the_promql_reader_finds_metric_names_and_nothing_else() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, api) (rate(a_seconds_bucket{namespace=~"$namespace", x="by(y)"}[$__rate_interval])))"#
        ),
        ["a_seconds_bucket"]
    );
    assert_eq!(
        names(
            "(sum by (namespace, job) (b) < 1) or absent(c) unless on (pod) group_left (x) d offset 5m > bool 1e3"
        ),
        ["b", "c", "d"]
    );
    assert_eq!(
        names("max_over_time(e[5m:1m]) * ignoring(le) f / Inf"),
        ["e", "f"]
    );
    assert_eq!(names("label_values(g_info, namespace)"), ["g_info", "namespace"]);
}

#[test]
fn the_exposition_reader_resolves_counter_and_histogram_series() {
    let exported = exported_names(
        "# TYPE a counter\n# TYPE h histogram\n# TYPE g gauge\ng 1\nh_bucket{le=\"1\"} 0\n# EOF\n",
    );
    let expected: BTreeSet<String> = ["a_total", "h_bucket", "h_sum", "h_count", "g"]
        .map(String::from)
        .into();
    assert_eq!(exported, expected);
}

#[tokio::test]
async fn every_metric_the_alerts_and_the_dashboard_name_is_on_a_live_metrics_endpoint() {
    // A controller with the KMS key pre-flight (counted as `run` counts it) and the policy
    // controller, so that every family has samples: a family without any is not exposed.
    let mut h = Harness::start_with(&["watched", "keyed"], |settings| {
        settings.policy_secret_namespace = NAMESPACE.into();
        settings.object_audits.scan_period = Duration::from_millis(100);
    })
    .await;
    h.stop_controller().await;
    let mut kms = KmsConfig {
        retry: fast_retries(3),
        endpoint: Some(h.oss.emulator.endpoint()),
        observer: Some(h.metrics.kms_observer()),
        ..KmsConfig::default()
    };
    kms.allow_list.allow(h.oss.emulator.endpoint().authority());
    h.settings.key_checker = Some(KeyChecker::new(
        KmsClient::new(kms).unwrap(),
        Duration::from_secs(60),
    ));
    h.start_controller();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(oss_encryption_operator::telemetry::serve(
        listener,
        h.health.probe(h.metrics.clone()),
        std::future::pending(),
    ));
    h.oss.emulator.state().put_kms_key(
        "key-live",
        KmsKey {
            region: REGION.into(),
            ..KmsKey::default()
        },
    );
    // With an object audit, so the audit's families have samples too.
    h.create("watched", "watched", json!({"objectAudit": {}})).await;
    h.create(
        "keyed",
        "keyed",
        json!({"algorithm": "KMS", "kmsMasterKeyId": "key-live"}),
    )
    .await;
    // Ready=True and InSync=True (Ready says Applied after the first write, as it confirms it).
    h.wait_in_sync("watched").await;
    h.wait_in_sync("keyed").await;
    h.wait_for("watched", "status.objects", |o| {
        o.status.as_ref().is_some_and(|s| s.objects.is_some())
    })
    .await;
    create_policy(&h, "audit", json!({"rule": {"algorithm": "KMS"}})).await;
    wait_status(&h, "audit", "a pass", |s| {
        s["buckets"]["selected"].as_i64() == Some(2)
    })
    .await;
    let exposition = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported = exported_names(&exposition);

    let chart_rules: Value =
        serde_saphyr::from_str(&read("deploy/helm/oss-encryption-operator/files/alerts.yaml")).unwrap();
    let kustomize_rules: Value =
        serde_saphyr::from_str(&read("deploy/monitoring/prometheusrule.yaml")).unwrap();
    let dashboard: Value = serde_json::from_str(&read("deploy/monitoring/grafana-dashboard.json")).unwrap();
    let mut queries = rule_exprs("files/alerts.yaml", &chart_rules);
    queries.extend(rule_exprs(
        "deploy/monitoring/prometheusrule.yaml",
        &kustomize_rules["spec"],
    ));
    let panels = dashboard_queries(&dashboard);
    assert!(panels.len() >= 15, "the dashboard's queries: {panels:?}");
    queries.extend(panels);

    let mut missing = Vec::new();
    let mut used = BTreeSet::new();
    for (source, expr) in &queries {
        // label_values(metric, label): only the first argument is a metric.
        let expr = expr
            .strip_prefix("label_values(")
            .and_then(|rest| rest.split(',').next())
            .unwrap_or(expr);
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{source}: no metric found in {expr}");
        for name in names {
            if !exported.contains(&name) {
                missing.push(format!("{source}: {name}"));
            }
            used.insert(name);
        }
    }
    assert!(
        missing.is_empty(),
        "metrics the operator does not export:\n{}\n/metrics:\n{exposition}",
        missing.join("\n")
    );
    // What the alerts and panels cover, by family.
    for family in [
        "objects",
        "drift_corrections_total",
        "oss_requests_total",
        "oss_throttles_total",
        "oss_request_duration_seconds_bucket",
        "kms_requests_total",
        "reconciles_total",
        "leader",
        "policy_buckets",
        "not_permitted_resources",
    ] {
        assert!(
            used.contains(&format!("oss_encryption_operator_{family}")),
            "nothing reads {family}"
        );
    }
}
