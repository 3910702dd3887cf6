//! Per-request observability, wired once for both listeners: request id
//! (incoming `X-Request-Id` honoured), W3C trace context (`traceparent`
//! honoured and returned), a span whose fields every log line of the request
//! carries, the access-log line and the HTTP metrics.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use actix_web::HttpResponse;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
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
    /// Bound on reading a request body, counted from the request's start
    /// (`server.request_read_timeout`); `None` = unbounded (admin listener,
    /// which is not for strangers).
    pub body_deadline: Option<std::time::Duration>,
    /// `Strict-Transport-Security` on every answer (an https issuer).
    pub hsts: bool,
}

/// A request body that ends in an error once its deadline has passed, so a
/// client that sends `Content-Length: 1000` and then a byte a second cannot
/// hold a connection and a worker's attention.
struct DeadlinePayload {
    inner: actix_web::dev::Payload,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    fired: Arc<std::sync::atomic::AtomicBool>,
}

impl futures_util::Stream for DeadlinePayload {
    type Item = Result<actix_web::web::Bytes, actix_web::error::PayloadError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => {}
            ready => return ready,
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.fired.store(true, std::sync::atomic::Ordering::Relaxed);
                Poll::Ready(Some(Err(actix_web::error::PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "request body not received in time",
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// OAuth endpoints speak RFC 6749 JSON, including for the answers actix
/// writes itself (body too large) and for a body that came too slowly.
fn speaks_oauth_json(path: &str) -> bool {
    path.starts_with("/oauth/") && path != "/oauth/authorize"
}

impl Observer {
    pub fn call<S, B>(
        &self,
        mut req: ServiceRequest,
        srv: &S,
    ) -> impl Future<Output = Result<ServiceResponse<BoxBody>, Error>> + use<S, B>
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
        B: MessageBody + 'static,
    {
        let started = Instant::now();
        let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Some(limit) = self.body_deadline {
            let inner = req.take_payload();
            let stream = DeadlinePayload { inner, sleep: Box::pin(tokio::time::sleep(limit)), fired: fired.clone() };
            let boxed: std::pin::Pin<
                Box<dyn futures_util::Stream<Item = Result<actix_web::web::Bytes, actix_web::error::PayloadError>>>,
            > = Box::pin(stream);
            req.set_payload(actix_web::dev::Payload::from(boxed));
        }
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
            let result = fut.await.map(|res| {
                let res = res.map_into_boxed_body();
                let timed_out = fired.load(std::sync::atomic::Ordering::Relaxed);
                let status = res.status();
                if timed_out {
                    tracing::warn!(path = %path, "request body not received within server.request_read_timeout; connection closed");
                    let mut r = if speaks_oauth_json(&path) {
                        HttpResponse::RequestTimeout().json(serde_json::json!({"error": "invalid_request", "error_description": "the request body was not received in time"}))
                    } else {
                        HttpResponse::RequestTimeout().body("request body not received in time")
                    };
                    r.head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
                    res.into_response(r)
                } else if status == StatusCode::PAYLOAD_TOO_LARGE && speaks_oauth_json(&path) {
                    let r = HttpResponse::PayloadTooLarge()
                        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
                        .json(serde_json::json!({"error": "invalid_request", "error_description": "request body too large"}));
                    res.into_response(r)
                } else {
                    res
                }
            });
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
                    if this.hsts {
                        // RFC 6797: https issuers only; one year, subdomains not assumed.
                        h.insert(
                            actix_web::http::header::STRICT_TRANSPORT_SECURITY,
                            HeaderValue::from_static("max-age=31536000"),
                        );
                    }
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
