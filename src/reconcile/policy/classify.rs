//! Pure decisions of the policy controller: which buckets a policy selects, who has precedence
//! over a bucket (a BucketEncryption, an older policy), whether a rule complies, and the status
//! counts and list a pass adds up to.

use std::cmp::Ordering;

use crate::api::policy::{
    BucketCounts, BucketEncryptionPolicy, ManagedByResource, NON_COMPLIANT_LISTED, NonCompliantBucket,
    PolicyDesired,
};
use crate::oss::EncryptionRule;
use crate::oss::list::BucketSummary;

/// How a policy's selector treats a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Not covered: not counted at all.
    Outside,
    /// Matches, but named in `exclude`.
    Excluded,
    Selected,
}

/// Regions, prefix and pattern must all match; `exclude` then takes it back out.
pub fn selection(policy: &PolicyDesired, bucket: &BucketSummary) -> Selection {
    let in_region = policy.regions.is_empty() || policy.regions.contains(&bucket.region);
    let named = bucket.name.starts_with(&policy.name_prefix)
        && policy
            .name_pattern
            .as_ref()
            .is_none_or(|p| p.is_match(&bucket.name));
    match (in_region && named, policy.exclude.contains(&bucket.name)) {
        (false, _) => Selection::Outside,
        (true, true) => Selection::Excluded,
        (true, false) => Selection::Selected,
    }
}

/// A policy's place in line: older first (creation time), then by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seniority {
    pub created: Option<jiff::Timestamp>,
    pub name: String,
}

impl Seniority {
    /// Whether `self` comes before `other` (a policy without a creation time comes last).
    pub fn is_older_than(&self, other: &Seniority) -> bool {
        let by_time = match (self.created, other.created) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        by_time.then_with(|| self.name.cmp(&other.name)) == Ordering::Less
    }
}

/// Whether a policy takes part in precedence: alive, with a valid spec, and its last pass at
/// this generation not stopped by something only a change can fix (an invalid spec,
/// credentials that do not resolve, an endpoint refused). A broken policy silences nobody.
pub fn can_claim(policy: &BucketEncryptionPolicy) -> bool {
    const CANNOT_ACT: [&str; 3] = ["InvalidSpec", "CredentialsNotFound", "EndpointNotAllowed"];
    let generation = policy.metadata.generation;
    let failed = policy.status.as_ref().is_some_and(|status| {
        status.conditions.iter().any(|c| {
            c.type_ == "Synced"
                && c.status == "False"
                && c.observed_generation == generation
                && CANNOT_ACT.contains(&c.reason.as_str())
        })
    });
    policy.metadata.deletion_timestamp.is_none() && policy.spec.validate().is_ok() && !failed
}

/// Where a selected bucket stands before its rule is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// A BucketEncryption names it: the resource wins, the policy leaves it alone.
    ManagedByResource,
    /// An older policy selects it too: that one wins.
    ClaimedByPolicy(String),
    /// This policy is responsible: read (and in Manage mode, fix) it.
    Ours,
}

/// Precedence: a resource, then the oldest policy selecting the bucket.
pub fn standing(
    managed_by_resource: bool,
    me: &Seniority,
    others: &[(Seniority, &PolicyDesired)],
    bucket: &BucketSummary,
) -> Standing {
    if managed_by_resource {
        return Standing::ManagedByResource;
    }
    others
        .iter()
        .filter(|(seniority, policy)| {
            seniority.is_older_than(me) && selection(policy, bucket) == Selection::Selected
        })
        .min_by(|(a, _), (b, _)| {
            if a.is_older_than(b) {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        })
        .map_or(Standing::Ours, |(seniority, _)| {
            Standing::ClaimedByPolicy(seniority.name.clone())
        })
}

/// Whether a bucket's rule complies: equal to the rule or to one of `accept`.
pub fn complies(policy: &PolicyDesired, observed: Option<&EncryptionRule>) -> bool {
    policy.rule.as_ref() == observed || policy.accept.iter().any(|accepted| accepted.as_ref() == observed)
}

/// One selected bucket's outcome of a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Compliant,
    /// `observed` in words; `note` says why it was not fixed (Observe mode, a downgrade, a bad key).
    NonCompliant {
        observed: String,
        note: String,
    },
    ManagedByResource,
    ClaimedByPolicy,
    Excluded,
    Error(String),
}

/// Adds up outcomes: the counts, and the non-compliant buckets sorted by name (at most 50).
pub fn tally<'a>(
    outcomes: impl IntoIterator<Item = (&'a BucketSummary, &'a Outcome)>,
) -> (BucketCounts, Vec<NonCompliantBucket>) {
    let mut counts = BucketCounts::default();
    let mut listed = Vec::new();
    for (bucket, outcome) in outcomes {
        match outcome {
            Outcome::Compliant => counts.compliant += 1,
            Outcome::NonCompliant { observed, .. } => {
                counts.non_compliant += 1;
                listed.push(NonCompliantBucket {
                    bucket: bucket.name.clone(),
                    region: bucket.region.clone(),
                    observed: observed.clone(),
                });
            }
            Outcome::ManagedByResource => counts.managed_by_resource += 1,
            Outcome::ClaimedByPolicy => counts.claimed_by_policy += 1,
            Outcome::Excluded => counts.excluded += 1,
            Outcome::Error(_) => counts.errors += 1,
        }
    }
    counts.selected = counts.compliant
        + counts.non_compliant
        + counts.managed_by_resource
        + counts.claimed_by_policy
        + counts.errors;
    listed.sort_by(|a, b| a.bucket.cmp(&b.bucket));
    listed.truncate(NON_COMPLIANT_LISTED);
    (counts, listed)
}

/// The buckets resources exempt: `(bucket, owning resource)` sorted by bucket (then resource),
/// at most 50, as the status lists them.
pub fn exemptions(owned: impl IntoIterator<Item = (String, String)>) -> Vec<ManagedByResource> {
    let mut listed: Vec<ManagedByResource> = owned
        .into_iter()
        .map(|(bucket, resource)| ManagedByResource { bucket, resource })
        .collect();
    listed.sort_by(|a, b| (&a.bucket, &a.resource).cmp(&(&b.bucket, &b.resource)));
    listed.truncate(NON_COMPLIANT_LISTED);
    listed
}

/// A pass's conditions: Ready (the policy's job is done: in Observe mode reporting, in Manage
/// mode holding every bucket to the rule) and Compliant (every selected bucket complies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub ready: bool,
    pub ready_reason: &'static str,
    pub compliant: bool,
    pub compliant_reason: &'static str,
    pub message: String,
}

/// Pure: the verdict of a pass from its counts; `errors` names the buckets that failed.
pub fn verdict(counts: &BucketCounts, manage: bool, errors: &[String]) -> Verdict {
    let checked = |ready, ready_reason, compliant, compliant_reason, message| Verdict {
        ready,
        ready_reason,
        compliant,
        compliant_reason,
        message,
    };
    match (counts.non_compliant, counts.errors) {
        (0, 0) => checked(
            true,
            "Compliant",
            true,
            "Compliant",
            format!("{} selected bucket(s) compliant", counts.compliant),
        ),
        (0, n) => checked(
            false,
            "BucketErrors",
            false,
            "BucketErrors",
            format!("{n} bucket(s) could not be checked: {}", errors.join("; ")),
        ),
        (n, _) if manage => checked(
            false,
            "NonCompliant",
            false,
            "NonCompliant",
            format!(
                "{n} bucket(s) non-compliant and not correctable (a downgrade or a key OSS cannot use); see status.nonCompliant"
            ),
        ),
        (n, _) => checked(
            true,
            "Observed",
            false,
            "NonCompliant",
            format!("{n} bucket(s) non-compliant (Observe mode: not corrected); see status.nonCompliant"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oss::SseAlgorithm;

    fn policy(regions: &[&str], prefix: &str, pattern: Option<&str>, exclude: &[&str]) -> PolicyDesired {
        PolicyDesired {
            regions: regions.iter().map(|r| r.to_string()).collect(),
            name_prefix: prefix.into(),
            name_pattern: pattern.map(|p| regex::Regex::new(p).unwrap()),
            exclude: exclude.iter().map(|e| e.to_string()).collect(),
            rule: Some(EncryptionRule::kms(None, None)),
            accept: vec![Some(EncryptionRule::new(SseAlgorithm::Sm4))],
            endpoint: None,
            signature_version: crate::oss::SignatureVersion::V4,
            resync_interval: None,
        }
    }

    fn bucket(name: &str, region: &str) -> BucketSummary {
        BucketSummary {
            name: name.into(),
            region: region.into(),
            ..BucketSummary::default()
        }
    }

    fn seniority(name: &str, second: i64) -> Seniority {
        Seniority {
            created: Some(jiff::Timestamp::from_second(second).unwrap()),
            name: name.into(),
        }
    }

    #[test]
    fn selection_over_a_table_of_cases() {
        use Selection::*;
        let p = policy(&["cn-hangzhou"], "prod-", Some("^prod-[a-z]+$"), &["prod-public"]);
        let cases = [
            ("prod-web", "cn-hangzhou", Selected),
            ("prod-web", "cn-shanghai", Outside),
            ("dev-web", "cn-hangzhou", Outside),
            ("prod-web-2", "cn-hangzhou", Outside),
            ("prod-public", "cn-hangzhou", Excluded),
            ("prod-public", "cn-shanghai", Outside),
        ];
        for (name, region, expected) in cases {
            assert_eq!(selection(&p, &bucket(name, region)), expected, "{name} {region}");
        }
        let everything = policy(&[], "", None, &[]);
        assert_eq!(selection(&everything, &bucket("any", "eu-central-1")), Selected);
    }

    #[test]
    fn precedence_between_a_resource_two_policies_and_exclusions() {
        let me = seniority("mine", 200);
        let older = policy(&[], "prod-", None, &["prod-skip"]);
        let younger = policy(&[], "", None, &[]);
        let others = [
            (seniority("older", 100), &older),
            (seniority("younger", 300), &younger),
        ];
        let prod = bucket("prod-a", "cn-hangzhou");
        assert_eq!(
            standing(true, &me, &others, &prod),
            Standing::ManagedByResource,
            "a resource always wins"
        );
        assert_eq!(
            standing(false, &me, &others, &prod),
            Standing::ClaimedByPolicy("older".into())
        );
        assert_eq!(
            standing(false, &me, &others, &bucket("dev-a", "r")),
            Standing::Ours,
            "the older one does not select it"
        );
        assert_eq!(
            standing(false, &me, &others, &bucket("prod-skip", "r")),
            Standing::Ours,
            "an older policy that excludes the bucket does not claim it"
        );
        // Equal times: the name decides; the oldest of several claimants is named.
        let tie = [
            (seniority("a-first", 200), &younger),
            (seniority("oldest", 50), &younger),
        ];
        assert_eq!(
            standing(false, &me, &tie, &prod),
            Standing::ClaimedByPolicy("oldest".into())
        );
        assert_eq!(
            standing(
                false,
                &seniority("a-first", 200),
                &[(me.clone(), &younger)],
                &prod
            ),
            Standing::Ours
        );
    }

    #[test]
    fn compliance_is_the_rule_or_an_accepted_one() {
        let p = policy(&[], "", None, &[]);
        assert!(complies(&p, Some(&EncryptionRule::kms(None, None))));
        assert!(complies(&p, Some(&EncryptionRule::new(SseAlgorithm::Sm4))));
        assert!(!complies(&p, Some(&EncryptionRule::new(SseAlgorithm::Aes256))));
        assert!(
            !complies(&p, Some(&EncryptionRule::kms(Some("k"), None))),
            "another key is another rule"
        );
        assert!(!complies(&p, None));
    }

    #[test]
    fn tally_counts_sorts_and_caps_the_list() {
        let buckets: Vec<BucketSummary> = (0..60).rev().map(|i| bucket(&format!("b-{i:02}"), "r")).collect();
        let mut outcomes: Vec<Outcome> = buckets
            .iter()
            .map(|_| Outcome::NonCompliant {
                observed: "None".into(),
                note: String::new(),
            })
            .collect();
        outcomes[0] = Outcome::Compliant;
        outcomes[1] = Outcome::Excluded;
        outcomes[2] = Outcome::ManagedByResource;
        outcomes[3] = Outcome::Error("x".into());
        outcomes[4] = Outcome::ClaimedByPolicy;
        let (counts, listed) = tally(buckets.iter().zip(&outcomes));
        assert_eq!(
            counts,
            BucketCounts {
                selected: 59,
                compliant: 1,
                non_compliant: 55,
                managed_by_resource: 1,
                claimed_by_policy: 1,
                excluded: 1,
                errors: 1,
            }
        );
        assert_eq!(listed.len(), 50);
        assert_eq!(listed[0].bucket, "b-00");
        assert!(listed.windows(2).all(|w| w[0].bucket < w[1].bucket));
    }

    #[test]
    fn exemptions_are_sorted_by_bucket_and_capped_at_fifty() {
        let owned = (0..60).rev().map(|i| (format!("b-{i:02}"), format!("ns/r{i}")));
        let listed = exemptions(owned);
        assert_eq!(listed.len(), 50);
        assert_eq!(
            (listed[0].bucket.as_str(), listed[0].resource.as_str()),
            ("b-00", "ns/r0")
        );
        assert_eq!(listed[49].bucket, "b-49");
    }

    #[test]
    fn verdicts_over_a_table_of_counts() {
        let counts = |compliant, non_compliant, errors| BucketCounts {
            compliant,
            non_compliant,
            errors,
            ..BucketCounts::default()
        };
        // (counts, manage) → (Ready, reason, Compliant, reason)
        let cases = [
            (counts(3, 0, 0), true, (true, "Compliant", true, "Compliant")),
            (counts(3, 0, 0), false, (true, "Compliant", true, "Compliant")),
            (
                counts(3, 0, 1),
                false,
                (false, "BucketErrors", false, "BucketErrors"),
            ),
            (
                counts(3, 2, 0),
                true,
                (false, "NonCompliant", false, "NonCompliant"),
            ),
            (counts(3, 2, 1), false, (true, "Observed", false, "NonCompliant")),
        ];
        for (counts, manage, (ready, ready_reason, compliant, compliant_reason)) in cases {
            let v = verdict(&counts, manage, &["b: boom".into()]);
            assert_eq!(
                (v.ready, v.ready_reason, v.compliant, v.compliant_reason),
                (ready, ready_reason, compliant, compliant_reason),
                "{counts:?} manage={manage}"
            );
        }
        assert!(
            verdict(&counts(0, 0, 1), true, &["b: boom".into()])
                .message
                .contains("b: boom")
        );
    }
}
