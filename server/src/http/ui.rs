//! `/oauth/authorize` and the pages a browser sees (`/ui/login`,
//! `/ui/consent`). Server-rendered, templates compiled in, no script, CSP
//! with `frame-ancestors 'none'`, a CSRF token on every form, and the flow
//! bound to the browser that started it by an HttpOnly cookie.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use super::error::error_page;
use super::page::{issuer_host, page};
use super::request::{MAX_FORM, client_addr, denied, ids};
use crate::oauth::authorize::{self, Failure, Params, Validated};
use crate::oauth::error::{Error, Kind};
use crate::oauth::form::Form;
use crate::oauth::login::{self, Refusal};
use crate::oauth::{clients, consent, upstream, upstream_login};
use crate::state::AppState;
use crate::store::audit::{self, AuditEvent};
use crate::store::entries as reg;
use crate::store::oauth::{self as rows, AuthRequestRow};
use crate::{clock, random};

pub const SESSION_COOKIE: &str = "authplane_session";
pub const FLOW_COOKIE: &str = "authplane_flow";
const FLOW_TTL: i64 = 15 * 60;
static CSS: &str = include_str!("../../static/authplane.css");

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    issuer_host: &'a str,
    client_name: &'a str,
    request_id: &'a str,
    csrf: &'a str,
    username: &'a str,
    error: Option<&'a str>,
    upstreams: Vec<UpstreamView<'a>>,
    /// Show the password form (someone has a password).
    local_users: bool,
}

struct UpstreamView<'a> {
    id: &'a str,
    label: &'a str,
}

struct ResourceView {
    name: String,
    uri: String,
    scopes: Vec<String>,
    new_scopes: Vec<String>,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    issuer_host: &'a str,
    client_name: &'a str,
    username: &'a str,
    resources: Vec<ResourceView>,
    offline_access: bool,
    redirect_host: &'a str,
    request_id: &'a str,
    csrf: &'a str,
}

fn secure_cookies(state: &AppState) -> bool {
    state.deps.config.load().server.issuer.starts_with("https://")
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// A redirect to the client (RFC 6749 §4.1.2); 303 so a POST never repeats.
fn to_client(redirect_uri: &str, params: &[(&str, &str)], state_param: Option<&str>, issuer: &str) -> HttpResponse {
    away(&authorize::redirect_url(redirect_uri, params, state_param, issuer))
}

/// A 303 off this server (to a client, to an identity provider): not cached,
/// and the page's URL not sent along as a referrer.
fn away(url: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, HeaderValue::from_str(url).unwrap_or(HeaderValue::from_static("/"))))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .finish()
}

pub async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(CSS)
}

/// The authorize query (GET) or form (POST) into its parameters; public for
/// the fuzz target (`fuzz/`).
pub fn parse_params(raw: &[u8]) -> Result<Params, Error> {
    let mut f = Form::parse(raw)?;
    Ok(Params {
        response_type: f.take("response_type"),
        client_id: f.take("client_id"),
        redirect_uri: f.take("redirect_uri"),
        scope: f.take("scope"),
        state: f.take("state"),
        code_challenge: f.take("code_challenge"),
        code_challenge_method: f.take("code_challenge_method"),
        resource: std::mem::take(&mut f.resource),
        response_mode: f.take("response_mode"),
        prompt: f.take("prompt"),
        dpop_jkt: f.take("dpop_jkt"),
    })
}

/// `GET|POST /oauth/authorize`.
#[tracing::instrument(name = "ui.authorize", level = "debug", skip_all, fields(authplane.layer = "service"))]
pub async fn authorize(req: HttpRequest, body: Bytes, state: web::Data<AppState>) -> HttpResponse {
    let now = clock::now();
    let raw: Vec<u8> = if req.method() == actix_web::http::Method::POST {
        if body.len() > MAX_FORM {
            return error_page(&state, &req, &Error::new(Kind::InvalidRequest, "request too large"));
        }
        body.to_vec()
    } else {
        req.query_string().as_bytes().to_vec()
    };
    let params = match parse_params(&raw) {
        Ok(p) => p,
        Err(e) => {
            denied(&state, &e, "authorization request refused", None, None);
            return error_page(&state, &req, &e);
        }
    };
    let client = match params.client_id.as_deref() {
        Some(id) if id.len() <= 4096 => match clients::find_from(&state.deps, id, now, client_addr(&state, &req)).await
        {
            Ok(c) => c,
            Err(e) => {
                denied(&state, &e, "authorization request refused", Some(id), None);
                return error_page(&state, &req, &e);
            }
        },
        _ => None,
    };
    let cfg = state.deps.config.load_full();
    let index = state.deps.resources.get();
    let (validated, grant) =
        match authorize::validate(&params, client.as_ref().map(|c| &c.spec), &index.resources, &cfg.oauth) {
            Ok(v) => v,
            Err(f) => {
                let e = f.error().clone();
                denied(
                    &state,
                    &e,
                    "authorization request refused",
                    params.client_id.as_deref(),
                    params.resource.first().map(String::as_str),
                );
                return match f {
                    Failure::Page(e) => error_page(&state, &req, &e),
                    Failure::Redirect { redirect_uri, state: st, error } => to_client(
                        &redirect_uri,
                        &[("error", error.kind.code()), ("error_description", &error.description)],
                        st.as_deref(),
                        &cfg.server.issuer,
                    ),
                };
            }
        };
    if !grant.dropped.is_empty() {
        tracing::info!(client_id = %validated.client_id, dropped = %grant.dropped.join(" "), "unknown scopes dropped");
    }

    // A returning user (signed in, nothing to ask) gets the code at once,
    // as from the consent page without a page: no request row, no second
    // round trip. `prompt=login|consent` always shows the page.
    let user = if validated.prompt_login { None } else { current_user(&state, &req, now).await };
    if let Some(user_id) = &user
        && !validated.prompt_consent
    {
        match consent::missing(&state.deps, user_id, &validated).await {
            Ok(m) if m.iter().all(|(_, new)| new.is_empty()) => {
                return finish(&state, &req, None, &validated, user_id, false, now).await;
            }
            Ok(_) => {}
            Err(e) => return error_page(&state, &req, &e),
        }
    }

    // Bind the flow to this browser: reuse its flow cookie or set one.
    let flow_nonce = req
        .cookie(FLOW_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() == 43)
        .unwrap_or_else(random::secret_token);
    let row = AuthRequestRow {
        id: random::id("ar_"),
        browser_sha256: random::sha256_hex(flow_nonce.as_bytes()),
        csrf: random::secret_token(),
        client_id: validated.client_id.clone(),
        params: serde_json::to_string(&validated).unwrap_or_default(),
        user_id: None,
        created_at: now,
        expires_at: now + FLOW_TTL,
    };
    if let Err(e) = rows::insert_auth_request(&state.deps.db, row.clone()).await {
        let e: Error = e.into();
        return error_page(&state, &req, &e);
    }
    let next = if user.is_none() {
        format!("/ui/login?request={}", row.id)
    } else {
        format!("/ui/consent?request={}", row.id)
    };
    let mut res = see_other(&next);
    let cookie = Cookie::build(FLOW_COOKIE, flow_nonce)
        .path("/ui")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure_cookies(&state))
        .finish();
    let _ = res.add_cookie(&cookie);
    res
}

async fn current_user(state: &AppState, req: &HttpRequest, now: i64) -> Option<String> {
    let sid = req.cookie(SESSION_COOKIE)?;
    rows::session_user(&state.deps.db, &random::sha256_hex(sid.value().as_bytes()), now).await.ok().flatten()
}

/// The pending request, if it exists and belongs to this browser.
async fn flow(state: &AppState, req: &HttpRequest, id: &str, now: i64) -> Result<(AuthRequestRow, Validated), Error> {
    let expired = || {
        Error::new(
            Kind::InvalidRequest,
            "this sign-in request has expired or is unknown; start again from the application",
        )
    };
    let row = rows::get_auth_request(&state.deps.db, id, now).await?.ok_or_else(expired)?;
    let nonce = req.cookie(FLOW_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    if !random::secure_eq(random::sha256_hex(nonce.as_bytes()).as_bytes(), row.browser_sha256.as_bytes()) {
        return Err(Error::new(
            Kind::InvalidRequest,
            "this sign-in request was started in another browser; start again from the application",
        ));
    }
    let v: Validated = serde_json::from_str(&row.params).map_err(|_| expired())?;
    Ok((row, v))
}

#[derive(serde::Deserialize)]
pub struct RequestQuery {
    request: String,
}

#[tracing::instrument(name = "ui.login", level = "debug", skip_all, fields(authplane.layer = "service"))]
pub async fn login_page(req: HttpRequest, q: web::Query<RequestQuery>, state: web::Data<AppState>) -> HttpResponse {
    let now = clock::now();
    match flow(&state, &req, &q.request, now).await {
        Ok((row, v)) => {
            // One identity provider and nobody with a password: no page.
            let cfg = state.deps.config.load();
            if let [only] = cfg.upstreams.as_slice()
                && !reg::has_local_users(&state.deps.db).await.unwrap_or(true)
            {
                return see_other(&format!("/ui/upstream/{}/start?request={}", only.id, row.id));
            }
            render_login(&state, &row, &v, "", None, StatusCode::OK, now).await
        }
        Err(e) => error_page(&state, &req, &e),
    }
}

async fn render_login(
    state: &AppState,
    row: &AuthRequestRow,
    v: &Validated,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
    now: i64,
) -> HttpResponse {
    let client_name = clients::find(&state.deps, &v.client_id, now)
        .await
        .ok()
        .flatten()
        .map(|c| c.display_name)
        .unwrap_or_else(|| v.client_id.clone());
    let cfg = state.deps.config.load();
    let local_users = cfg.upstreams.is_empty() || reg::has_local_users(&state.deps.db).await.unwrap_or(true);
    let html = LoginPage {
        issuer_host: &issuer_host(state),
        client_name: &client_name,
        request_id: &row.id,
        csrf: &row.csrf,
        username,
        error,
        upstreams: cfg.upstreams.iter().map(|u| UpstreamView { id: &u.id, label: u.label() }).collect(),
        local_users,
    }
    .render()
    .unwrap_or_default();
    page(status, html)
}

fn csrf_ok(row: &AuthRequestRow, form: &Form) -> bool {
    random::secure_eq(form.get("csrf").unwrap_or("").as_bytes(), row.csrf.as_bytes())
}

/// What the login and consent forms share: a bounded form body, the pending
/// request of this browser, and the form's CSRF token. Any failure is the
/// error page; a CSRF failure is also a denial (`what` is its log message).
async fn posted_flow(
    state: &AppState,
    req: &HttpRequest,
    body: &Bytes,
    now: i64,
    what: &'static str,
) -> Result<(Form, AuthRequestRow, Validated), HttpResponse> {
    let form = match Form::parse(body) {
        Ok(f) if body.len() <= MAX_FORM => f,
        _ => return Err(error_page(state, req, &Error::new(Kind::InvalidRequest, "malformed form"))),
    };
    let (row, v) =
        flow(state, req, form.get("request").unwrap_or(""), now).await.map_err(|e| error_page(state, req, &e))?;
    if !csrf_ok(&row, &form) {
        let e = Error::new(
            Kind::InvalidRequest,
            "the form expired or was not sent by this page (CSRF check failed); start again",
        );
        denied(state, &e, what, Some(&v.client_id), None);
        return Err(error_page(state, req, &e));
    }
    Ok((form, row, v))
}

#[tracing::instrument(name = "ui.login", level = "debug", skip_all, fields(authplane.layer = "service"))]
pub async fn login_submit(req: HttpRequest, body: Bytes, state: web::Data<AppState>) -> HttpResponse {
    let now = clock::now();
    let (form, row, v) = match posted_flow(&state, &req, &body, now, "login refused").await {
        Ok(x) => x,
        Err(page) => return page,
    };
    let username = form.get("username").unwrap_or("").to_owned();
    let password = form.get("password").unwrap_or("").to_owned();
    let addr = client_addr(&state, &req);
    let signed = match login::sign_in(&state.deps, &username, password, addr, &v.client_id, &ids(&req), now).await {
        Ok(s) => s,
        Err(e) => return error_page(&state, &req, &e),
    };
    let (status, e, msg, retry_after) = match signed {
        Ok(s) => {
            tracing::info!(user_id = %s.user_id, client_id = %v.client_id, "user signed in");
            return signed_in(&state, &row, s);
        }
        Err(Refusal::Throttled { retry_after: secs }) => (
            StatusCode::TOO_MANY_REQUESTS,
            Error::new(Kind::LoginThrottled, format!("too many failed sign-ins; retry in {secs} s")),
            format!(
                "Too many failed sign-in attempts. For your account's safety, wait {} and try again.",
                human_wait(secs)
            ),
            Some(secs),
        ),
        Err(Refusal::Overloaded) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Error::new(Kind::Overloaded, "no password-hashing slot became free in time").retry_after(5),
            "The server is busy. Please try again in a few seconds.".to_owned(),
            Some(5),
        ),
        Err(Refusal::Wrong) => (
            StatusCode::UNAUTHORIZED,
            Error::new(Kind::LoginFailed, "wrong username or password"),
            "Wrong username or password.".to_owned(),
            None,
        ),
    };
    let what = if status == StatusCode::UNAUTHORIZED { "login failed" } else { "login refused" };
    denied(&state, &e, what, Some(&v.client_id), None);
    let mut res = render_login(&state, &row, &v, &username, Some(&msg), status, now).await;
    if let Some(secs) = retry_after {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

/// The browser goes on to consent with its new session cookie.
fn signed_in(state: &AppState, row: &AuthRequestRow, s: login::SignedIn) -> HttpResponse {
    let mut res = see_other(&format!("/ui/consent?request={}", row.id));
    let _ = res.add_cookie(&session_cookie(state, s));
    res
}

fn session_cookie(state: &AppState, s: login::SignedIn) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, s.session)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure_cookies(state))
        .max_age(actix_web::cookie::time::Duration::seconds(s.ttl))
        .finish()
}

#[derive(serde::Deserialize)]
pub struct UpstreamPath {
    id: String,
}

/// The configured identity provider named in the path.
fn upstream_of<'a>(
    cfg: &'a authplane_core::config::Config,
    id: &str,
) -> Result<&'a authplane_core::config::UpstreamConfig, Error> {
    cfg.upstreams
        .iter()
        .find(|u| u.id == id)
        .ok_or_else(|| Error::new(Kind::InvalidRequest, "no such identity provider"))
}

fn flow_browser(req: &HttpRequest) -> String {
    random::sha256_hex(req.cookie(FLOW_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default().as_bytes())
}

/// The page for a failed sign-in through a provider, counted and logged as
/// a denial (its `login_failed` audit row is already written).
fn upstream_failed(
    state: &AppState,
    req: &HttpRequest,
    label: &str,
    f: &upstream::Failure,
    client_id: Option<&str>,
) -> HttpResponse {
    let kind = match f {
        upstream::Failure::Unreachable(_) | upstream::Failure::Misconfigured(_) => Kind::TemporarilyUnavailable,
        _ => Kind::UpstreamLoginFailed,
    };
    let e = Error::new(kind, f.page(label));
    state.metrics.deny(e.kind.reason());
    tracing::error!(
        error = e.name(),
        code = e.kind.code(),
        client_id = client_id.unwrap_or("-"),
        reason = f.reason(),
        detail = %f.detail(),
        "upstream sign-in failed"
    );
    error_page(state, req, &e)
}

/// `GET /ui/upstream/<id>/start?request=…`: to the provider, for the
/// pending sign-in request of this browser.
#[tracing::instrument(name = "ui.upstream.start", level = "debug", skip_all, fields(authplane.layer = "service"))]
pub async fn upstream_start(
    req: HttpRequest,
    path: web::Path<UpstreamPath>,
    q: web::Query<RequestQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let now = clock::now();
    let cfg = state.deps.config.load_full();
    let u = match upstream_of(&cfg, &path.id) {
        Ok(u) => u,
        Err(e) => return error_page(&state, &req, &e),
    };
    let (row, v) = match flow(&state, &req, &q.request, now).await {
        Ok(x) => x,
        Err(e) => return error_page(&state, &req, &e),
    };
    match upstream_login::start(&state.deps, u, &row.id, &row.browser_sha256, &ids(&req), now).await {
        Ok(Ok(url)) => away(&url),
        Ok(Err(f)) => upstream_failed(&state, &req, u.label(), &f, Some(&v.client_id)),
        Err(e) => error_page(&state, &req, &e),
    }
}

/// `GET /ui/upstream/<id>/callback`: back from the provider; on success the
/// browser goes on to consent with a new session.
#[tracing::instrument(name = "ui.upstream.callback", level = "debug", skip_all, fields(authplane.layer = "service"))]
pub async fn upstream_callback(
    req: HttpRequest,
    path: web::Path<UpstreamPath>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let now = clock::now();
    let cfg = state.deps.config.load_full();
    let u = match upstream_of(&cfg, &path.id) {
        Ok(u) => u,
        Err(e) => return error_page(&state, &req, &e),
    };
    let cb: upstream_login::Callback = match web::Query::from_query(req.query_string()) {
        Ok(web::Query(cb)) => cb,
        Err(_) => upstream_login::Callback::default(),
    };
    match upstream_login::finish(&state.deps, u, &cb, &flow_browser(&req), &ids(&req), now).await {
        Ok(Ok(done)) => {
            tracing::info!(user_id = %done.signed_in.user_id, upstream = %u.id, "user signed in");
            let mut res = see_other(&format!("/ui/consent?request={}", done.auth_request_id));
            let _ = res.add_cookie(&session_cookie(&state, done.signed_in));
            res
        }
        Ok(Err(f)) => upstream_failed(&state, &req, u.label(), &f, None),
        Err(e) => error_page(&state, &req, &e),
    }
}

/// "42 seconds", "3 minutes" for the throttled page.
fn human_wait(secs: u64) -> String {
    match secs {
        0..=1 => "a second".to_owned(),
        2..=89 => format!("{secs} seconds"),
        _ => format!("{} minutes", secs.div_ceil(60)),
    }
}

/// Scopes the user has not yet granted this client for each resource.
#[tracing::instrument(name = "ui.consent", level = "debug", skip_all, fields(authplane.layer = "service"))]
pub async fn consent_page(req: HttpRequest, q: web::Query<RequestQuery>, state: web::Data<AppState>) -> HttpResponse {
    let now = clock::now();
    let (row, v) = match flow(&state, &req, &q.request, now).await {
        Ok(x) => x,
        Err(e) => return error_page(&state, &req, &e),
    };
    let Some(user_id) = current_user(&state, &req, now).await else {
        return see_other(&format!("/ui/login?request={}", row.id));
    };
    let missing = match consent::missing(&state.deps, &user_id, &v).await {
        Ok(m) => m,
        Err(e) => return error_page(&state, &req, &e),
    };
    if !v.prompt_consent && missing.iter().all(|(_, new)| new.is_empty()) {
        // Remembered consent covers every scope: no page.
        return finish(&state, &req, Some(&row.id), &v, &user_id, false, now).await;
    }
    let client_name = clients::find(&state.deps, &v.client_id, now)
        .await
        .ok()
        .flatten()
        .map(|c| c.display_name)
        .unwrap_or_else(|| v.client_id.clone());
    let username = reg::find_user(&state.deps.db, &user_id)
        .await
        .ok()
        .flatten()
        .map(|u| u.username)
        .unwrap_or_else(|| user_id.clone());
    let index = state.deps.resources.get();
    let resources = missing
        .into_iter()
        .map(|(uri, new_scopes)| {
            let r = index.resources.iter().find(|x| x.resource.as_str() == uri);
            ResourceView {
                name: r.and_then(|r| r.name.clone()).unwrap_or_else(|| uri.clone()),
                scopes: v.scopes.iter().filter(|s| r.is_some_and(|r| r.scopes.contains(s))).cloned().collect(),
                uri,
                new_scopes,
            }
        })
        .collect();
    let redirect_host = url::Url::parse(&v.redirect_uri)
        .ok()
        .map(|u| u.host_str().map(str::to_owned).unwrap_or_else(|| format!("{}:", u.scheme())))
        .unwrap_or_default();
    let html = ConsentPage {
        issuer_host: &issuer_host(&state),
        client_name: &client_name,
        username: &username,
        resources,
        offline_access: v.offline_access,
        redirect_host: &redirect_host,
        request_id: &row.id,
        csrf: &row.csrf,
    }
    .render()
    .unwrap_or_default();
    page(StatusCode::OK, html)
}

#[tracing::instrument(name = "ui.consent", level = "debug", skip_all, fields(authplane.layer = "service"))]
pub async fn consent_submit(req: HttpRequest, body: Bytes, state: web::Data<AppState>) -> HttpResponse {
    let now = clock::now();
    let (form, row, v) = match posted_flow(&state, &req, &body, now, "consent refused").await {
        Ok(x) => x,
        Err(page) => return page,
    };
    let Some(user_id) = current_user(&state, &req, now).await else {
        return see_other(&format!("/ui/login?request={}", row.id));
    };
    match form.get("decision") {
        Some("approve") => finish(&state, &req, Some(&row.id), &v, &user_id, true, now).await,
        Some("deny") => {
            let e = Error::new(Kind::AccessDenied, "the user denied access");
            denied(&state, &e, "authorization denied", Some(&v.client_id), v.resources.first().map(String::as_str));
            let _ = rows::delete_auth_request(&state.deps.db, &row.id).await;
            let ids = ids(&req);
            let _ = audit::record(
                &state.deps.db,
                clock::now_ms(),
                AuditEvent {
                    event_type: "consent_denied",
                    outcome: "failure",
                    user_id: Some(user_id.clone()),
                    client_id: Some(v.client_id.clone()),
                    resource: v.resources.first().cloned(),
                    request_id: ids.request_id,
                    trace_id: ids.trace_id,
                    detail: serde_json::json!({"scopes": v.scopes}),
                },
            )
            .await;
            let issuer = state.deps.config.load().server.issuer.clone();
            to_client(
                &v.redirect_uri,
                &[("error", "access_denied"), ("error_description", "the user denied access")],
                v.state.as_deref(),
                &issuer,
            )
        }
        _ => error_page(&state, &req, &Error::new(Kind::InvalidRequest, "decision must be approve or deny")),
    }
}

/// Records consent (when just given), issues the code and sends the browser
/// back to the client, all in one transaction.
async fn finish(
    state: &AppState,
    req: &HttpRequest,
    request_row_id: Option<&str>,
    v: &Validated,
    user_id: &str,
    granted_now: bool,
    now: i64,
) -> HttpResponse {
    let cfg = state.deps.config.load();
    let code = match consent::issue_code(&state.deps, request_row_id, v, user_id, granted_now, &ids(req), now).await {
        Ok(code) => code,
        Err(e) => return error_page(state, req, &e),
    };
    tracing::info!(user_id, client_id = %v.client_id, resource = v.resources.first().map(String::as_str).unwrap_or("-"), "authorization code issued");
    to_client(&v.redirect_uri, &[("code", &code)], v.state.as_deref(), &cfg.server.issuer)
}
