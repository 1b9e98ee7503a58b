//! The Helm chart's CRDs are the generated ones. Rendering, schema validation, RBAC and every
//! value combination are checked with the real Helm engine by `scripts/deploy-check`
//! (`tests/deploy/test_chart.py`), which `.ci/run` runs after this suite.

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/oss-encryption-operator");

#[test]
fn the_chart_ships_the_current_crds() {
    for (file, generated) in [
        ("bucketencryption.yaml", oss_encryption_operator::api::crd_yaml()),
        (
            "bucketencryptionpolicy.yaml",
            oss_encryption_operator::api::policy::crd_yaml(),
        ),
        (
            "bucketencryptiongrant.yaml",
            oss_encryption_operator::api::grant::crd_yaml(),
        ),
    ] {
        let chart_copy = std::fs::read_to_string(format!("{CHART}/crds/{file}")).unwrap();
        assert!(
            chart_copy == generated,
            "deploy/helm/oss-encryption-operator/crds/{file} is stale: copy crds/{file} there"
        );
    }
}
