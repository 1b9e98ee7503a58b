//! The Helm chart, rendered without helm (not installable here): a small renderer for exactly the
//! template constructs the chart uses — `.Values.*`, `.Release.Name/Namespace`, `if`, `range`,
//! `quote`, `toYaml | nindent`, trim markers — which fails on anything else, so the chart cannot
//! quietly use what this test cannot check. The rendered YAML is then checked like the kustomize
//! base: it parses, references itself correctly, and grants exactly the verbs used.

use std::collections::BTreeMap;

use serde_json::{Value, json};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/oss-encryption-operator");

/// Text and actions of a template, trim markers applied.
fn tokens(template: &str) -> Vec<(bool, String)> {
    let mut out: Vec<(bool, String)> = Vec::new();
    let mut rest = template;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = rest[..start].to_owned();
        if trim_next {
            text = text.trim_start().to_owned();
        }
        let end = rest[start..].find("}}").expect("unclosed action") + start;
        let mut action = &rest[start + 2..end];
        if let Some(a) = action.strip_prefix('-') {
            text = text.trim_end().to_owned();
            action = a;
        }
        trim_next = action.ends_with('-');
        let action = action.strip_suffix('-').unwrap_or(action).trim().to_owned();
        out.push((false, text));
        out.push((true, action));
        rest = &rest[end + 2..];
    }
    let tail = if trim_next { rest.trim_start() } else { rest };
    out.push((false, tail.to_owned()));
    out
}

fn lookup(path: &str, values: &Value, dot: &Value) -> Value {
    match path {
        "." => dot.clone(),
        ".Release.Name" => json!("ossenc"),
        ".Release.Namespace" => json!("operators"),
        p => {
            let rest = p
                .strip_prefix(".Values.")
                .unwrap_or_else(|| panic!("unsupported reference {p}"));
            rest.split('.').fold(values.clone(), |v, key| {
                v.get(key).cloned().unwrap_or(Value::Null)
            })
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn evaluate(action: &str, values: &Value, dot: &Value) -> String {
    let stages: Vec<&str> = action.split('|').map(str::trim).collect();
    let mut value: Option<Value> = None;
    let mut text = String::new();
    for stage in stages {
        let words: Vec<&str> = stage.split_whitespace().collect();
        match words.as_slice() {
            ["toYaml", path] => {
                let yaml = serde_saphyr::to_string(&lookup(path, values, dot)).unwrap();
                text = yaml.trim_end().to_owned();
            }
            ["nindent", n] => {
                let pad = " ".repeat(n.parse().unwrap());
                text = text.lines().map(|l| format!("\n{pad}{l}")).collect();
            }
            ["quote"] => text = format!("{:?}", value.as_ref().map(scalar).unwrap_or_else(|| text.clone())),
            [path] => {
                let v = lookup(path, values, dot);
                text = scalar(&v);
                value = Some(v);
            }
            other => panic!("unsupported template stage {other:?}"),
        }
    }
    text
}

/// Renders a template with these values.
fn render(template: &str, values: &Value) -> String {
    fn block(tokens: &[(bool, String)], at: &mut usize, values: &Value, dot: &Value, out: &mut String) {
        while *at < tokens.len() {
            let (is_action, content) = &tokens[*at];
            *at += 1;
            if !is_action {
                out.push_str(content);
                continue;
            }
            let words: Vec<&str> = content.split_whitespace().collect();
            match words.as_slice() {
                ["end"] => return,
                ["if", path] => {
                    let mut inner = String::new();
                    block(tokens, at, values, dot, &mut inner);
                    if truthy(&lookup(path, values, dot)) {
                        out.push_str(&inner);
                    }
                }
                ["range", path] => {
                    let start = *at;
                    let items = lookup(path, values, dot).as_array().cloned().unwrap_or_default();
                    let mut end = start;
                    if items.is_empty() {
                        block(tokens, &mut end, values, dot, &mut String::new());
                    }
                    for item in &items {
                        end = start;
                        block(tokens, &mut end, values, item, out);
                    }
                    *at = end;
                }
                _ => out.push_str(&evaluate(content, values, dot)),
            }
        }
    }
    let tokens = tokens(template);
    let mut out = String::new();
    let mut at = 0;
    block(&tokens, &mut at, values, &Value::Null, &mut out);
    out
}

fn default_values() -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(format!("{CHART}/values.yaml")).unwrap()).unwrap()
}

/// Every rendered object, by kind.
fn rendered(values: &Value) -> BTreeMap<String, Vec<Value>> {
    let mut kinds: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut names: Vec<_> = std::fs::read_dir(format!("{CHART}/templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let text = render(&std::fs::read_to_string(&path).unwrap(), values);
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{} renders to invalid YAML: {e}\n{text}", path.display()));
        for document in documents.into_iter().filter(|d| !d.is_null()) {
            kinds
                .entry(document["kind"].as_str().unwrap().to_owned())
                .or_default()
                .push(document);
        }
    }
    kinds
}

fn args(kinds: &BTreeMap<String, Vec<Value>>) -> Vec<String> {
    kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_renderer_handles_what_the_chart_uses() {
    let values = json!({"a": {"b": "x"}, "list": ["p", "q"], "off": false, "map": {"k": "v"}});
    assert_eq!(
        render("n={{ .Values.a.b }} r={{ .Release.Name }}", &values),
        "n=x r=ossenc"
    );
    assert_eq!(
        render("{{- range .Values.list }}\n- {{ . }}{{- end }}", &values),
        "\n- p\n- q"
    );
    assert_eq!(
        render("a\n{{- if .Values.off }}\nno{{- end }}\nb", &values),
        "a\nb"
    );
    assert_eq!(render("{{ .Values.a.b | quote }}", &values), "\"x\"");
    assert_eq!(
        render("m:{{- toYaml .Values.map | nindent 2 }}", &values),
        "m:\n  k: v"
    );
}

#[test]
fn defaults_render_a_complete_least_privilege_install() {
    let kinds = rendered(&default_values());
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        assert_eq!(kinds.get(kind).map(Vec::len), Some(1), "one {kind}");
    }
    assert!(!kinds.contains_key("ServiceMonitor"), "off by default");
    let account = &kinds["ServiceAccount"][0]["metadata"];
    assert_eq!(account["namespace"], "operators");
    assert!(account.get("annotations").is_none(), "no RRSA role unless set");
    let binding = &kinds["ClusterRoleBinding"][0];
    assert_eq!(
        binding["roleRef"]["name"],
        kinds["ClusterRole"][0]["metadata"]["name"]
    );
    assert_eq!(binding["subjects"][0]["name"], account["name"]);
    let pod = &kinds["Deployment"][0]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], account["name"]);
    assert_eq!(
        pod["containers"][0]["image"],
        "ghcr.io/oss-encryption-operator/oss-encryption-operator:0.1.0"
    );
    assert_eq!(pod["containers"][0]["resources"]["limits"]["memory"], "256Mi");
    assert_eq!(
        kinds["Service"][0]["spec"]["selector"],
        kinds["Deployment"][0]["spec"]["selector"]["matchLabels"]
    );

    let secrets = kinds["ClusterRole"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resources"] == json!(["secrets"]))
        .unwrap()
        .clone();
    assert_eq!(secrets["verbs"], json!(["get"]));
    assert_eq!(
        kinds["Role"][0]["rules"][0]["verbs"],
        json!(["get", "create", "patch"])
    );

    // Every rendered flag is one `run` accepts.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_oss-encryption-operator"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let rendered_args = args(&kinds);
    assert!(rendered_args.contains(&"--leader-election".to_owned()));
    for arg in rendered_args.iter().skip(1) {
        let flag = arg.split('=').next().unwrap();
        assert!(help.contains(flag), "`run` has no {flag}");
    }
}

#[test]
fn values_switch_features_on_and_off() {
    let mut values = default_values();
    values["leaderElection"]["enabled"] = json!(false);
    values["serviceMonitor"]["enabled"] = json!(true);
    values["namespaces"] = json!(["team-a", "team-b"]);
    values["labelSelector"] = json!("shard=a");
    values["rrsa"]["roleName"] = json!("oss-operator-role");
    let kinds = rendered(&values);
    assert!(!kinds.contains_key("Role") && !kinds.contains_key("RoleBinding"));
    assert_eq!(
        kinds["ServiceMonitor"][0]["spec"]["endpoints"][0]["port"],
        "http-metrics"
    );
    let args = args(&kinds);
    assert!(!args.contains(&"--leader-election".to_owned()));
    for expected in [
        "--namespace=team-a",
        "--namespace=team-b",
        "--label-selector=shard=a",
    ] {
        assert!(args.contains(&expected.to_owned()), "{args:?}");
    }
    assert_eq!(
        kinds["ServiceAccount"][0]["metadata"]["annotations"]["pod-identity.alibabacloud.com/role-name"],
        "oss-operator-role"
    );
}

#[test]
fn the_chart_ships_the_current_crd() {
    let chart_copy = std::fs::read_to_string(format!("{CHART}/crds/bucketencryption.yaml")).unwrap();
    assert!(
        chart_copy == oss_encryption_operator::api::crd_yaml(),
        "deploy/helm/.../crds is stale"
    );
}
