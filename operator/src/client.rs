//! The Kubernetes client, with a layer that counts every write request by
//! resource and verb (`authplane_operator_api_writes_total`).

use std::task::{Context, Poll};

use kube::client::ClientBuilder;
use kube::{Client, Config};
use tower::{Layer, Service};

use crate::metrics::{Metrics, WriteLabels};

pub async fn build(metrics: &Metrics) -> Result<Client, kube::Error> {
    let config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    Ok(ClientBuilder::try_from(config)?.with_layer(&CountWrites { metrics: metrics.clone() }).build())
}

#[derive(Clone)]
pub struct CountWrites {
    metrics: Metrics,
}

impl<S> Layer<S> for CountWrites {
    type Service = CountWritesService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountWritesService { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct CountWritesService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B> Service<http::Request<B>> for CountWritesService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let verb = match *req.method() {
            http::Method::POST => Some("create"),
            http::Method::PUT => Some("update"),
            http::Method::PATCH => Some("patch"),
            http::Method::DELETE => Some("delete"),
            _ => None,
        };
        if let Some(verb) = verb {
            self.metrics.writes.get_or_create(&WriteLabels { resource: resource_of(req.uri().path()), verb }).inc();
        }
        self.inner.call(req)
    }
}

/// `secrets`, `oauthclients/status`, `leases`… from an API path.
pub fn resource_of(path: &str) -> String {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let start = match segs.iter().position(|s| *s == "namespaces") {
        Some(i) if segs.len() > i + 2 => i + 2,
        _ => match segs.first() {
            Some(&"api") => 2,
            _ => 3,
        },
    };
    let resource = segs.get(start).copied().unwrap_or("unknown");
    match segs.get(start + 2) {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::resource_of;

    #[test]
    fn resources_from_paths() {
        assert_eq!(resource_of("/api/v1/namespaces/ns/secrets/x"), "secrets");
        assert_eq!(resource_of("/api/v1/namespaces/ns/secrets"), "secrets");
        assert_eq!(
            resource_of("/apis/authplane.io/v1alpha1/namespaces/ns/oauthclients/c/status"),
            "oauthclients/status"
        );
        assert_eq!(resource_of("/apis/coordination.k8s.io/v1/namespaces/ns/leases/op"), "leases");
        assert_eq!(
            resource_of("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x"),
            "customresourcedefinitions"
        );
    }
}
