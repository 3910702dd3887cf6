//! Per-request observability, wired once for both listeners: request id
//! (incoming `X-Request-Id` honoured), W3C trace context (`traceparent`
//! honoured and returned), a span whose fields every log line of the request
//! carries, the access-log line and the HTTP metrics.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{Error, HttpMessage};
use tracing::Instrument;

use crate::metrics::{HttpLabels, Metrics, TraceExemplar};
use crate::telemetry::TraceParent;
use crate::telemetry::otel::{self, TraceIds};

/// Ids of the current request, available to handlers (audit rows) through
/// `HttpRequest::extensions()`.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub trace_id: String,
    pub span_id: String,
}

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// `X-Request-Id` from the client when it is a sane token, else a new one.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| {
            !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| crate::random::id("r_"))
}

/// W3C Trace Context §3.2: `00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>`,
/// neither id all zeros.
pub fn parse_traceparent(v: &str) -> Option<TraceParent> {
    let parts: Vec<&str> = v.trim().split('-').collect();
    let [version, trace, parent, flags, ..] = parts.as_slice() else { return None };
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex(version, 2) || *version == "ff" || (*version == "00" && parts.len() != 4) {
        return None;
    }
    if !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2) {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(TraceParent {
        trace_id: (*trace).to_owned(),
        parent_id: (*parent).to_owned(),
        flags: u8::from_str_radix(flags, 16).ok()?,
    })
}

/// The request's W3C ids. With trace export on they are OpenTelemetry's (the
/// HTTP span's); otherwise the incoming trace id is kept (or a new one made)
/// and the span id is new.
fn trace_ids(span: &tracing::Span, incoming: Option<&TraceParent>) -> TraceIds {
    if otel::enabled()
        && let Some(ids) = otel::start_request_span(span, incoming)
    {
        return ids;
    }
    match incoming {
        Some(tp) => TraceIds {
            trace_id: tp.trace_id.clone(),
            span_id: crate::random::hex_id::<8>(),
            flags: format!("{:02x}", tp.flags),
        },
        None => TraceIds {
            trace_id: crate::random::hex_id::<16>(),
            span_id: crate::random::hex_id::<8>(),
            flags: "01".into(),
        },
    }
}

#[derive(Clone)]
pub struct Observer {
    pub listener: &'static str,
    pub metrics: Arc<Metrics>,
    pub access_log: bool,
}

impl Observer {
    pub fn call<S, B>(
        &self,
        req: ServiceRequest,
        srv: &S,
    ) -> impl Future<Output = Result<ServiceResponse<B>, Error>> + use<S, B>
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    {
        let started = Instant::now();
        let rid = request_id(&req);
        let incoming = req.headers().get(&TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(parse_traceparent);
        let method = req.method().as_str().to_owned();
        let path = req.path().to_owned();
        let span = if otel::enabled() {
            tracing::info_span!(
                "request",
                request_id = %rid,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
                otel.name = %format_args!("{method} {path}"),
                otel.kind = "server",
                authplane.layer = "http",
                http.request.method = %method,
                url.path = %path,
                http.route = tracing::field::Empty,
                http.response.status_code = tracing::field::Empty,
            )
        } else {
            // The log fields only: no attribute formatting on the hot path.
            tracing::info_span!("request", request_id = %rid, trace_id = tracing::field::Empty, span_id = tracing::field::Empty)
        };
        let TraceIds { trace_id, span_id, flags } = trace_ids(&span, incoming.as_ref());
        span.record("trace_id", trace_id.as_str());
        span.record("span_id", span_id.as_str());
        req.extensions_mut().insert(RequestContext {
            request_id: rid.clone(),
            trace_id: trace_id.clone(),
            span_id: span_id.clone(),
        });
        // Enter the span for the synchronous part of the call too, so that
        // middleware which answers at once (admin auth) logs with the ids.
        let fut = {
            let _entered = span.enter();
            srv.call(req)
        };
        let this = self.clone();
        async move {
            let result = fut.await;
            let elapsed = started.elapsed();
            match result {
                Ok(mut res) => {
                    let status = res.status().as_u16();
                    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
                    if otel::enabled() {
                        let span = tracing::Span::current();
                        span.record("otel.name", format!("{method} {route}"));
                        span.record("http.route", route.as_str());
                        span.record("http.response.status_code", i64::from(status));
                        if status >= 500 {
                            otel::set_error(&span, format!("HTTP {status}"));
                        }
                    }
                    let labels = HttpLabels { listener: this.listener, method: method.clone(), route, status };
                    this.metrics.http_requests.get_or_create(&labels).inc();
                    this.metrics.http_duration.get_or_create(&labels).observe(
                        elapsed.as_secs_f64(),
                        Some(TraceExemplar { trace_id: trace_id.clone() }),
                        None,
                    );
                    let h = res.headers_mut();
                    if let Ok(v) = HeaderValue::from_str(&rid) {
                        h.insert(X_REQUEST_ID.clone(), v);
                    }
                    if let Ok(v) = HeaderValue::from_str(&format!("00-{trace_id}-{span_id}-{flags}")) {
                        h.insert(TRACEPARENT.clone(), v);
                    }
                    if this.access_log {
                        // The path only: query strings can carry codes and state.
                        tracing::info!(method = %method, path = %path, status, duration_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3, "request");
                    }
                    Ok(res)
                }
                Err(e) => {
                    tracing::error!(method = %method, path = %path, error = %e, "request failed");
                    Err(e)
                }
            }
        }
        .instrument(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_rules() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(ok),
            Some(TraceParent {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                parent_id: "00f067aa0ba902b7".into(),
                flags: 1
            })
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
        // A future version may carry more fields.
        assert!(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_some());
    }
}
