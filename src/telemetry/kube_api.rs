//! Kubernetes API request counts: a tower layer on the `kube::Client` that counts every
//! response by verb, resource and HTTP status code (beside the OSS and KMS counts).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{Method, Request, Response};

use super::Metrics;

/// A `kube::Client` for `config` whose requests are counted in `metrics`
/// (`oss_encryption_operator_kubernetes_api_requests_total`).
pub fn instrumented_client(config: kube::Config, metrics: Arc<Metrics>) -> Result<kube::Client, kube::Error> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&CountRequests(metrics))
        .build())
}

/// A request's labels, from its method, path and query: the Kubernetes verb (as the API
/// server's audit log names it: `get`/`list`/`watch`, `create`, `update`, `patch`,
/// `delete`/`deletecollection`) and the resource (see [`resource`]; `-` for other paths).
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> (&'static str, String) {
    let resource = resource(path);
    let collection = resource.as_ref().is_some_and(|(_, named)| !named);
    let label = resource.map_or_else(|| "-".to_owned(), |(resource, _)| resource);
    (verb(method, collection, query), label)
}

/// The verb of a request on a collection or on one object.
fn verb(method: &Method, collection: bool, query: Option<&str>) -> &'static str {
    let watching = query.is_some_and(|q| q.split('&').any(|pair| pair == "watch=true" || pair == "watch=1"));
    match *method {
        Method::GET if watching => "watch",
        Method::GET if collection => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => "other",
    }
}

/// The resource a path names (`secrets`, `bucketencryptions/status`) and whether it names one
/// object; `None` for discovery and other non-resource paths.
pub fn resource(path: &str) -> Option<(String, bool)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _namespace, resource, tail @ ..] => {
            let mut all = vec![*resource];
            all.extend_from_slice(tail);
            all
        }
        other => other.to_vec(),
    };
    match rest.as_slice() {
        [] => None,
        [resource] => Some(((*resource).to_owned(), false)),
        [resource, _name] => Some(((*resource).to_owned(), true)),
        [resource, _name, subresource, ..] => Some((format!("{resource}/{subresource}"), true)),
    }
}

/// The layer that wraps the client's HTTP service.
#[derive(Clone)]
struct CountRequests(Arc<Metrics>);

impl<S> tower::Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The client's HTTP service, counting each answer (or `error` when none came).
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> tower::Service<Request<B>> for Counted<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let uri = request.uri();
        let (verb, resource) = classify(request.method(), uri.path(), uri.query());
        let metrics = self.metrics.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let result = answer.await;
            let code = match &result {
                Ok(response) => response.status().as_u16().to_string(),
                Err(_) => "error".to_owned(),
            };
            metrics.kube_request(verb, &resource, &code);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_follow_the_api_servers_names() {
        let cases = [
            (
                Method::GET,
                "/apis/oss.encryption.dev/v1alpha1/bucketencryptions",
                None,
                "list",
            ),
            (
                Method::GET,
                "/apis/oss.encryption.dev/v1alpha1/bucketencryptions",
                Some("resourceVersion=5&watch=true&timeoutSeconds=290"),
                "watch",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/team-a/secrets/creds",
                None,
                "get",
            ),
            (Method::GET, "/api/v1/namespaces/team-a", None, "get"),
            (Method::GET, "/api/v1/namespaces", None, "list"),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/team-a/events",
                None,
                "create",
            ),
            (
                Method::PATCH,
                "/apis/oss.encryption.dev/v1alpha1/namespaces/team-a/bucketencryptions/b/status",
                Some("fieldManager=x&force=true"),
                "patch",
            ),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/ops/leases/op",
                None,
                "update",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/team-a/secrets/creds",
                None,
                "delete",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/team-a/secrets",
                None,
                "deletecollection",
            ),
        ];
        for (method, path, query, expected) in cases {
            assert_eq!(classify(&method, path, query).0, expected, "{method} {path}");
        }
    }

    #[test]
    fn resources_name_the_subresource_and_skip_discovery() {
        assert_eq!(
            resource("/apis/oss.encryption.dev/v1alpha1/namespaces/a/bucketencryptions/b/status"),
            Some(("bucketencryptions/status".into(), true))
        );
        assert_eq!(
            resource("/apis/oss.encryption.dev/v1alpha1/bucketencryptionpolicies/p"),
            Some(("bucketencryptionpolicies".into(), true))
        );
        assert_eq!(
            resource("/api/v1/namespaces/a"),
            Some(("namespaces".into(), true))
        );
        assert_eq!(resource("/apis/coordination.k8s.io/v1"), None);
        assert_eq!(resource("/version"), None);
        assert_eq!(classify(&Method::GET, "/version", None).1, "-");
        assert_eq!(resource("/api"), None);
    }
}
