//! Where and as whom to call OSS: the endpoint must pass the allow-list (else nothing is sent),
//! then the credentials are resolved from the resource's Secret or the operator's own chain.
//! Shared by the sync steps and the finalizer.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::context::Context;
use super::error::Error;
use super::secret_reads::Freshness;
use crate::api::{BucketEncryption, DesiredState};
use crate::oss::{BucketTarget, Credentials, CredentialsProvider};

/// The bucket to call and the credentials to call it with.
pub async fn resolve(
    resource: &BucketEncryption,
    desired: &DesiredState,
    ctx: &Context,
    freshness: Freshness,
) -> Result<(BucketTarget, CredentialsProvider), Error> {
    ctx.oss
        .config()
        .allow_list
        .check(&desired.endpoint)
        .map_err(|e| Error::EndpointNotAllowed(e.to_string()))?;
    let credentials = credentials(resource, ctx, freshness).await?;
    let target = BucketTarget {
        bucket: desired.bucket.clone(),
        region: desired.region.clone(),
        endpoint: desired.endpoint.clone(),
        signature_version: desired.signature_version,
    };
    Ok((target, credentials))
}

/// The object's Secret (read with `get`, never listed or watched) or the operator's own
/// credentials.
async fn credentials(
    resource: &BucketEncryption,
    ctx: &Context,
    freshness: Freshness,
) -> Result<CredentialsProvider, Error> {
    let Some(source) = &resource.spec.credentials else {
        return ctx.operator_credentials.clone().ok_or_else(|| {
            Error::CredentialsNotFound(
                "spec.credentials is not set and the operator has no credentials of its own to use \
                 (or --allow-operator-credentials=false)"
                    .into(),
            )
        });
    };
    let namespace = resource.namespace().unwrap_or_default();
    secret_credentials(ctx, &namespace, &source.secret_ref.name, "", freshness).await
}

/// Credentials from a Secret (read with `get`, or a read another reconcile made within the last
/// second: `secret_reads`; never listed or watched); `hint` is added to the not-found message.
pub async fn secret_credentials(
    ctx: &Context,
    namespace: &str,
    name: &str,
    hint: &str,
    freshness: Freshness,
) -> Result<CredentialsProvider, Error> {
    let credentials = ctx
        .secrets
        .credentials(namespace, name, freshness, || {
            read_secret(ctx, namespace, name, hint)
        })
        .await?;
    Ok(CredentialsProvider::Static(credentials))
}

/// Reads the Secret from the API server now.
async fn read_secret(ctx: &Context, namespace: &str, name: &str, hint: &str) -> Result<Credentials, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("reading Secret {namespace}/{name}"), e))?
        .ok_or_else(|| Error::CredentialsNotFound(format!("Secret {namespace}/{name} not found{hint}")))?;
    let data = secret.data.unwrap_or_default();
    Credentials::from_fields(|key| data.get(key).map(|v| String::from_utf8_lossy(&v.0).into_owned()))
        .map_err(|missing| Error::CredentialsNotFound(format!("Secret {namespace}/{name} has {missing}")))
}
