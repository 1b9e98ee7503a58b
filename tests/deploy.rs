//! The manifests a cluster gets: they parse, reference each other and the CRD correctly, grant
//! exactly the verbs the operator uses, and run it locked down.

use std::collections::BTreeMap;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn documents(relative: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{ROOT}/{relative}")).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// Every object of a kustomization, following directory resources.
fn kustomize(dir: &str) -> Vec<Value> {
    let kustomization = &documents(&format!("{dir}/kustomization.yaml"))[0];
    let mut objects = Vec::new();
    for resource in kustomization["resources"].as_array().unwrap() {
        let path = format!("{dir}/{}", resource.as_str().unwrap());
        if std::path::Path::new(&format!("{ROOT}/{path}")).is_dir() {
            objects.extend(kustomize(&path));
        } else {
            objects.extend(documents(&path));
        }
    }
    objects
}

fn by_kind(objects: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for o in objects {
        map.entry(o["kind"].as_str().unwrap().to_owned())
            .or_default()
            .push(o.clone());
    }
    map
}

#[test]
fn the_base_references_the_crd_service_account_and_rbac() {
    let objects = kustomize("deploy/base");
    let kinds = by_kind(&objects);
    for kind in [
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
    ] {
        let expected = if kind == "CustomResourceDefinition" { 2 } else { 1 };
        assert_eq!(kinds.get(kind).map(Vec::len), Some(expected), "{kind}");
    }
    let crds: Vec<&str> = kinds["CustomResourceDefinition"]
        .iter()
        .map(|crd| crd["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        crds,
        [
            "bucketencryptions.oss.encryption.dev",
            "bucketencryptionpolicies.oss.encryption.dev"
        ]
    );
    let namespace = kinds["Namespace"][0]["metadata"]["name"].as_str().unwrap();
    let account = &kinds["ServiceAccount"][0]["metadata"];
    assert_eq!(account["namespace"], namespace);
    let binding = &kinds["ClusterRoleBinding"][0];
    assert_eq!(
        binding["roleRef"]["name"],
        kinds["ClusterRole"][0]["metadata"]["name"]
    );
    assert_eq!(binding["subjects"][0]["name"], account["name"]);
    assert_eq!(binding["subjects"][0]["namespace"], namespace);
    let pod = &kinds["Deployment"][0]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], account["name"]);
    let service = &kinds["Service"][0];
    assert_eq!(
        service["spec"]["selector"],
        kinds["Deployment"][0]["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn rbac_grants_exactly_the_verbs_used() {
    let objects = kustomize("deploy/base");
    let role = by_kind(&objects)["ClusterRole"][0].clone();
    let mut grants: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rule in role["rules"].as_array().unwrap() {
        for resource in rule["resources"].as_array().unwrap() {
            let verbs: Vec<String> = rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            assert!(!verbs.iter().any(|v| v == "*"), "no wildcard verbs");
            grants.insert(resource.as_str().unwrap().to_owned(), verbs);
        }
    }
    assert_eq!(
        grants["secrets"],
        ["get"],
        "Secrets: get only, never list or watch"
    );
    assert_eq!(grants["bucketencryptions"], ["get", "list", "watch", "patch"]);
    assert_eq!(grants["bucketencryptions/status"], ["patch"]);
    assert_eq!(grants["bucketencryptionpolicies"], ["get", "list", "watch"]);
    assert_eq!(grants["bucketencryptionpolicies/status"], ["patch"]);
    assert_eq!(grants["events"], ["create", "patch"]);
    assert_eq!(grants.len(), 6, "nothing else: {grants:?}");

    // Leases only in the operator's namespace, through a Role.
    let kinds = by_kind(&objects);
    let role = &kinds["Role"][0];
    assert_eq!(
        role["metadata"]["namespace"],
        kinds["Namespace"][0]["metadata"]["name"]
    );
    assert_eq!(role["rules"][0]["resources"], serde_json::json!(["leases"]));
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "create", "patch"])
    );
    let binding = &kinds["RoleBinding"][0];
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"][0]["name"],
        kinds["ServiceAccount"][0]["metadata"]["name"]
    );
}

#[test]
fn the_pod_is_locked_down_and_probed() {
    let objects = kustomize("deploy/base");
    let deployment = by_kind(&objects)["Deployment"][0].clone();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["args"][0], "run");
    // Every flag the manifest passes is one `run` accepts.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_oss-encryption-operator"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for arg in container["args"].as_array().unwrap().iter().skip(1) {
        let flag = arg.as_str().unwrap().split('=').next().unwrap();
        assert!(help.contains(flag), "`run` has no {flag}");
    }
}

#[test]
fn the_service_monitor_scrapes_the_metrics_port() {
    let monitor = kustomize("deploy/monitoring")[0].clone();
    assert_eq!(monitor["kind"], "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
}

#[test]
fn the_image_is_multi_stage_and_runs_as_non_root() {
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    assert_eq!(
        dockerfile.lines().filter(|l| l.starts_with("FROM ")).count(),
        2,
        "build and runtime stages"
    );
    assert!(dockerfile.contains("distroless") && dockerfile.contains(":nonroot"));
    assert!(dockerfile.contains("USER 65532"));
    assert!(dockerfile.contains("--locked"));
}
