//! The manifests a cluster gets: they parse, reference each other and the CRD correctly, grant
//! exactly the verbs the operator uses, and run it locked down.

mod support;

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
fn the_base_references_the_service_account_and_rbac_and_the_crds_are_apart() {
    let objects = kustomize("deploy/base");
    let kinds = by_kind(&objects);
    assert!(
        !kinds.contains_key("CustomResourceDefinition"),
        "deploy/base renders no CRD: deleting it must never delete the CRDs"
    );
    let crd_objects = kustomize("deploy/crds");
    let crd_kinds = by_kind(&crd_objects);
    assert_eq!(crd_kinds.len(), 1, "deploy/crds holds the CRDs only");
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
    ] {
        assert_eq!(kinds.get(kind).map(Vec::len), Some(1), "{kind}");
    }
    let crds: Vec<&str> = crd_kinds["CustomResourceDefinition"]
        .iter()
        .map(|crd| crd["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        crds,
        [
            "bucketencryptions.oss.encryption.dev",
            "bucketencryptionpolicies.oss.encryption.dev",
            "bucketencryptiongrants.oss.encryption.dev"
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
    assert_eq!(grants["bucketencryptiongrants"], ["get", "list", "watch"]);
    assert_eq!(grants["bucketencryptiongrants/status"], ["patch"]);
    assert_eq!(grants["events"], ["create", "patch"]);
    assert_eq!(grants["customresourcedefinitions"], ["get"]);
    let crd_rule = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resources"][0] == "customresourcedefinitions")
        .unwrap();
    assert_eq!(
        crd_rule["resourceNames"],
        serde_json::json!(["bucketencryptions.oss.encryption.dev"]),
        "the one CRD it reads, by name"
    );
    assert_eq!(grants.len(), 9, "nothing else: {grants:?}");

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

#[test]
fn the_image_builds_dependencies_before_the_sources_and_ships_both_binaries() {
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    let manifest = std::fs::read_to_string(format!("{ROOT}/Cargo.toml")).unwrap();
    let position = |needle: &str| {
        dockerfile
            .find(needle)
            .unwrap_or_else(|| panic!("the Dockerfile lacks {needle:?}"))
    };
    let manifests_only = position("COPY Cargo.toml Cargo.lock build.rs ./");
    let dependencies = position("cargo build --release --locked --bins");
    let sources = position("COPY . .");
    assert!(
        manifests_only < dependencies && dependencies < sources,
        "dependency layer first"
    );
    // Every target Cargo.toml declares gets a stub, or that layer's build fails.
    let stubs = &dockerfile[manifests_only..dependencies];
    let mut targets: Vec<String> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("path = \""))
        .map(|p| p.trim_end_matches('"').to_owned())
        .collect();
    let mut in_bench = false;
    for line in manifest.lines() {
        if line.starts_with('[') {
            in_bench = line == "[[bench]]";
        } else if let Some(name) = line.strip_prefix("name = \"").filter(|_| in_bench) {
            targets.push(format!("benches/{}.rs", name.trim_end_matches('"')));
        }
    }
    assert!(targets.len() >= 5, "lib, two bins, two benches: {targets:?}");
    for target in &targets {
        assert!(stubs.contains(target.as_str()), "no stub for {target}");
    }
    // The runtime image carries the operator and the emulator (deploy/demo runs the latter).
    assert!(dockerfile.contains("COPY --from=build /oss-encryption-operator /oss-emulator /"));
}

/// The namespace the kustomize base and the chart's tests install into.
const OPERATOR_NAMESPACE: &str = "oss-encryption-operator";

/// Whether `rules` (a Role's or ClusterRole's) allow `verb` on `group`/`resource`.
fn rules_allow(rules: &Value, group: &str, resource: &str, verb: &str) -> bool {
    let has = |list: &Value, wanted: &str| {
        list.as_array()
            .is_some_and(|items| items.iter().any(|i| i == wanted || i == "*"))
    };
    rules.as_array().is_some_and(|rules| {
        rules.iter().any(|rule| {
            has(&rule["apiGroups"], group) && has(&rule["resources"], resource) && has(&rule["verbs"], verb)
        })
    })
}

/// The operator binary, namespaced (`--namespace team-a`) with policies, leader election and
/// `--tenancy grants`, through a scenario touching every kind of call: a grant (watched, its
/// status written), a resource with a per-resource Secret and
/// `deletionPolicy: Delete` applied then deleted (finalizer), a policy whose Secret lives in
/// the operator's namespace, their status writes and Events. Returns every distinct access the
/// API test server saw: (group, namespace, resource, verb).
async fn accesses_of_a_namespaced_run() -> Vec<(String, String, String, String)> {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, DeleteParams, PostParams};
    use oss_encryption_operator::api::policy::BucketEncryptionPolicy;
    use support::operator::{Harness, NAMESPACE, SECRET};
    use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET};

    let mut h = Harness::start(&["rbac-owned", "rbac-policy"]).await;
    h.stop_controller().await;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": SECRET},
        "stringData": {"accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET}
    }))
    .unwrap();
    Api::<Secret>::namespaced(h.kube.client(), OPERATOR_NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    // The operator authenticates as `operator`: the server records who made each access, so
    // the test's own calls (creating the objects) are told apart.
    let _operator = h.spawn_operator_binary(
        "{token: operator}",
        &[
            "--leader-election".into(),
            "--enable-policies=true".into(),
            "--tenancy=grants".into(),
            format!("--namespace={NAMESPACE}"),
            format!(
                "--allowed-endpoint-suffixes={}",
                h.oss.emulator.endpoint().authority()
            ),
        ],
        |command| {
            command
                .env("POD_NAMESPACE", OPERATOR_NAMESPACE)
                .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID");
        },
    );
    let grant: oss_encryption_operator::api::grant::BucketEncryptionGrant =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryptionGrant",
            "metadata": {"name": "rbac"},
            "spec": {"namespaces": [NAMESPACE], "buckets": ["rbac-*"]},
        }))
        .unwrap();
    Api::all(h.kube.client())
        .create(&PostParams::default(), &grant)
        .await
        .unwrap();
    h.create(
        "owned",
        "rbac-owned",
        serde_json::json!({"deletionPolicy": "Delete"}),
    )
    .await;
    h.wait_ready("owned", "True", "Applied").await;
    let policy: BucketEncryptionPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryptionPolicy",
        "metadata": {"name": "rbac"},
        "spec": {"endpoint": h.oss.emulator.url(), "credentials": {"secretRef": {"name": SECRET}},
                 "selector": {"namePrefix": "rbac-"}, "rule": {"algorithm": "AES256"}},
    }))
    .unwrap();
    let policies: Api<BucketEncryptionPolicy> = Api::all(h.kube.client());
    policies.create(&PostParams::default(), &policy).await.unwrap();
    for attempt in 0.. {
        let seen = policies.get("rbac").await.unwrap();
        if seen.status.as_ref().and_then(|s| s.observed_generation).is_some() {
            break;
        }
        assert!(attempt < 400, "the policy was never reported on");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    h.api.delete("owned", &DeleteParams::default()).await.unwrap();
    for attempt in 0.. {
        if h.api.get_opt("owned").await.unwrap().is_none() {
            break;
        }
        assert!(attempt < 400, "the finalizer was never released");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The Events are written after the status; give the recorder a moment to flush.
    let operator_accesses = || -> Vec<(String, String, String, String)> {
        h.kube
            .accesses()
            .into_iter()
            .filter(|(who, ..)| who == "operator")
            .map(|(_, group, namespace, resource, verb)| (group, namespace, resource, verb))
            .collect()
    };
    for attempt in 0.. {
        let accesses = operator_accesses();
        let events_in = |ns: &str| {
            accesses
                .iter()
                .any(|(_, n, r, v)| n == ns && r == "events" && v == "create")
        };
        if events_in(NAMESPACE) && events_in("default") {
            break;
        }
        assert!(attempt < 200, "no Events were recorded: {accesses:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    operator_accesses()
}

#[tokio::test]
async fn the_base_rbac_allows_every_call_the_operator_makes() {
    let accesses = accesses_of_a_namespaced_run().await;
    // The scenario reached every kind of call the install must allow.
    let has = |namespace: &str, resource: &str, verb: &str| {
        accesses
            .iter()
            .any(|(_, n, r, v)| n == namespace && r == resource && v == verb)
    };
    let ns = support::operator::NAMESPACE;
    assert!(has(ns, "bucketencryptions", "watch") && has(ns, "bucketencryptions", "patch"));
    assert!(has(ns, "bucketencryptions/status", "patch") && has(ns, "secrets", "get"));
    assert!(has(OPERATOR_NAMESPACE, "secrets", "get"), "the policy's Secret");
    assert!(has(OPERATOR_NAMESPACE, "leases", "create"));
    assert!(
        has("", "bucketencryptionpolicies", "watch") && has("", "bucketencryptionpolicies/status", "patch")
    );
    assert!(
        has("", "bucketencryptiongrants", "watch") && has("", "bucketencryptiongrants/status", "patch"),
        "the grants cache and the grant's Ready condition"
    );
    assert!(
        has("default", "events", "create"),
        "Events about the cluster-scoped policy"
    );

    // deploy/base: the ClusterRole anywhere, each Role in its namespace.
    let objects = kustomize("deploy/base");
    let kinds = by_kind(&objects);
    let cluster_rules = &kinds["ClusterRole"][0]["rules"];
    let denied: Vec<_> = accesses
        .iter()
        .filter(|(group, namespace, resource, verb)| {
            !rules_allow(cluster_rules, group, resource, verb)
                && !kinds["Role"].iter().any(|role| {
                    role["metadata"]["namespace"] == namespace.as_str()
                        && rules_allow(&role["rules"], group, resource, verb)
                })
        })
        .collect();
    assert!(denied.is_empty(), "deploy/base does not allow {denied:?}");

    // For the chart's namespaced RBAC (rendered by Helm in tests/deploy/test_rbac.py).
    let out = format!("{ROOT}/target/observed-api-access");
    std::fs::create_dir_all(&out).unwrap();
    let rows: Vec<Value> = accesses
        .iter()
        .map(|(group, namespace, resource, verb)| {
            serde_json::json!({"group": group, "namespace": namespace, "resource": resource, "verb": verb, "watchedNamespace": ns})
        })
        .collect();
    std::fs::write(
        format!("{out}/namespaced-run.json"),
        serde_json::to_string_pretty(&rows).unwrap(),
    )
    .unwrap();
}
