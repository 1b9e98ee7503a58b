//! One bucket, one owner. OSS bucket names are global, so ownership is keyed by the bucket name
//! alone (never by region or endpoint spelling). The owner is the oldest claim naming the bucket;
//! ties go to namespace, then name. Pure; the controller (sync and finalize) and the CLI share it.

use jiff::Timestamp;

/// One resource's claim on a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub bucket: String,
    /// When the resource was created (`None` sorts first: manifests on disk have no age).
    pub created: Option<Timestamp>,
    pub namespace: String,
    pub name: String,
}

impl Claim {
    /// The claim a cluster resource makes (created at its creationTimestamp).
    pub fn of(resource: &crate::api::BucketEncryption) -> Self {
        use kube::{Resource, ResourceExt};
        Self {
            bucket: resource.spec.bucket.clone(),
            created: resource.meta().creation_timestamp.as_ref().map(|t| t.0),
            namespace: resource.namespace().unwrap_or_default(),
            name: resource.name_any(),
        }
    }

    /// `namespace/name`.
    pub fn resource(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn seniority(&self) -> (Option<Timestamp>, &str, &str) {
        (self.created, &self.namespace, &self.name)
    }
}

/// The owner of `bucket` among `claims` (claims on other buckets are ignored).
pub fn owner_of<'a>(bucket: &str, claims: impl IntoIterator<Item = &'a Claim>) -> Option<&'a Claim> {
    claims
        .into_iter()
        .filter(|c| c.bucket == bucket)
        .min_by(|a, b| a.seniority().cmp(&b.seniority()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(bucket: &str, created: Option<i64>, namespace: &str, name: &str) -> Claim {
        Claim {
            bucket: bucket.into(),
            created: created.map(|s| Timestamp::from_second(s).unwrap()),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn the_oldest_claim_owns_the_bucket() {
        let claims = [
            claim("b", Some(200), "a", "young"),
            claim("b", Some(100), "z", "old"),
            claim("other", Some(1), "a", "elsewhere"),
        ];
        assert_eq!(owner_of("b", &claims).unwrap().resource(), "z/old");
        assert_eq!(owner_of("other", &claims).unwrap().resource(), "a/elsewhere");
        assert_eq!(owner_of("none", &claims), None);
    }

    #[test]
    fn ties_go_to_namespace_then_name_whatever_the_order() {
        let claims = [
            claim("b", Some(100), "team-b", "a"),
            claim("b", Some(100), "team-a", "z"),
            claim("b", Some(100), "team-a", "y"),
        ];
        let mut reversed = claims.clone();
        reversed.reverse();
        assert_eq!(owner_of("b", &claims).unwrap().resource(), "team-a/y");
        assert_eq!(owner_of("b", &reversed).unwrap().resource(), "team-a/y");
    }

    #[test]
    fn manifests_without_age_are_ordered_by_name() {
        let claims = [claim("b", None, "ns", "second"), claim("b", None, "ns", "first")];
        assert_eq!(owner_of("b", &claims).unwrap().name, "first");
    }
}
