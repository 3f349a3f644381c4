//! The handler of one HTTP connection, sans-IO, and the interface it needs from the engine.
//!
//! The runtime owns the socket: it calls [`Connection::handle_input`] with what it read,
//! [`Connection::take_output`] for what to write, [`Connection::handle_eof`] when the peer closes,
//! and closes when [`Connection::wants_close`] says so and the output is flushed. After
//! [`Connection::is_event_stream`] turns true it writes [`super::response::sse_event`] frames for
//! the transfer events it receives. Nothing here blocks: the engine side ([`Backend`],
//! [`UploadSink`]) must answer from memory and write to the spool without waiting on the network.

use super::auth::{
    authorize, credential, host_allowed, login_form_ok, origin_allowed, Credential, Sessions,
};
use super::head::{HeadLimits, RequestHead};
use super::multipart::{MultipartDecoder, MultipartEvent, MultipartLimits};
use super::params::{cookie, is_multipart_form, parse_content_disposition};
use super::reader::{ReadEvent, RequestReader};
use super::response::{
    clear_cookie, error_response, http_error_response, json_response, page_response, see_other,
    session_cookie, sse_head, upload_created_body, ResponseHead, CONTINUE_100, COOKIE_NAME,
};
use super::route::{route, Route, RouteError};
use super::HttpError;

/// What the engine offers the HTTP handler. Every call returns at once.
pub trait Backend {
    type Upload: UploadSink;
    /// `GET /api/conferences` body.
    fn conferences_json(&self) -> String;
    /// `GET /api/conferences/{id}` body, `None` = 404.
    fn conference_json(&self, id: &str) -> Option<String>;
    /// `GET /api/conferences/{id}/transfers` body (the conference's files, each with its
    /// deliveries), `None` = 404.
    fn conference_transfers_json(&self, id: &str) -> Option<String>;
    /// `GET /api/transfers/{id}` body, `None` = 404.
    fn transfer_json(&self, id: &str) -> Option<String>;
    /// `DELETE /api/transfers/{id}`: false = no such transfer (404).
    fn cancel(&self, id: &str) -> bool;
    /// `GET /metrics` body (Prometheus text format).
    fn metrics(&self) -> String;
    /// Starts an upload into the spool (the transfer exists from here on).
    fn start_upload(&self, req: UploadRequest) -> Result<Self::Upload, Refusal>;
}

/// Where an upload's bytes go: the spool file of one transfer.
pub trait UploadSink {
    /// The transfer id (known from the start, so events can name it during the upload).
    fn transfer_id(&self) -> &str;
    /// Appends bytes. An error ends the upload (the sink is then aborted).
    fn write(&mut self, data: &[u8]) -> Result<(), Refusal>;
    /// The body ended normally: the spool file is complete.
    fn finish(self) -> Result<(), Refusal>;
    /// The upload failed: remove the partial spool file, abort started deliveries.
    fn abort(self, reason: &HttpError);
}

/// An upload about to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRequest {
    pub conference: String,
    /// Untrusted file name from the browser (never a path).
    pub filename: String,
    pub content_type: String,
    /// Exact size when Content-Length gave it (raw uploads).
    pub size: Option<u64>,
    /// The participant keys the file is for (`?to=` or the form's `to` field; [`recipients`]);
    /// `None`: the whole room.
    pub to: Option<Vec<String>>,
}

/// Every value of the query parameter `name`, in order; an error (400) when the query does not
/// decode.
fn query_values(head: &RequestHead, name: &str) -> Result<Vec<String>, String> {
    let Some(q) = head.query.as_deref() else {
        return Ok(Vec::new());
    };
    let pairs = super::params::parse_urlencoded(q).map_err(|e| format!("query: {}", e.reason()))?;
    Ok(pairs
        .into_iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v)
        .collect())
}

/// The chosen recipients of an upload from its `to` values (the query's, then the form's):
/// each a comma-separated list of participant keys, spaces around a key ignored, repeats kept
/// (the engine drops them). No value: `None`, the whole room; values naming no key: an error
/// with its reason (400).
pub fn recipients<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Option<Vec<String>>, String> {
    let mut given = false;
    let mut keys = Vec::new();
    for v in values {
        given = true;
        keys.extend(
            v.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
        );
    }
    if given && keys.is_empty() {
        return Err("empty recipient list (to)".into());
    }
    Ok(given.then_some(keys))
}

/// Why the engine refused or stopped an upload, with the status each implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 404.
    UnknownConference,
    /// 409.
    NoParticipants,
    /// 413.
    TooLarge,
    /// 503: too many concurrent uploads, or the engine cannot take more work now.
    Busy(String),
    /// 507: the spool quota (`spool_max_bytes`) is exhausted.
    Full(String),
    /// 409: the transfer was cancelled while it was being uploaded.
    Cancelled,
    /// 500: spool I/O failed.
    Internal(String),
    /// 400: the chosen recipients (`to`) name no participant, or one that is not in the
    /// conference (the reason names it).
    BadRecipients(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::UnknownConference => 404,
            Refusal::NoParticipants => 409,
            Refusal::TooLarge => 413,
            Refusal::Busy(_) => 503,
            Refusal::Full(_) => 507,
            Refusal::Cancelled => 409,
            Refusal::Internal(_) => 500,
            Refusal::BadRecipients(_) => 400,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Refusal::UnknownConference => "unknown conference",
            Refusal::NoParticipants => "conference has no participants",
            Refusal::TooLarge => "file larger than allowed",
            Refusal::Cancelled => "transfer cancelled",
            Refusal::Busy(r)
            | Refusal::Full(r)
            | Refusal::Internal(r)
            | Refusal::BadRecipients(r) => r,
        }
    }
}

/// Settings of the handler.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `None`: no auth (the runtime then binds to 127.0.0.1 only).
    pub token: Option<String>,
    pub max_file_bytes: u64,
    pub head: HeadLimits,
    pub multipart: MultipartLimits,
    /// `http_allowed_hosts` (`host` or `host:port`, lower-case): without a token, the names
    /// besides the loopback ones that `Host` and `Origin` may carry.
    pub allowed_hosts: Vec<String>,
    /// HTTPS: the session cookie is `Secure`.
    pub secure: bool,
    /// HTTPS with HSTS: the `Strict-Transport-Security` value put on every response.
    pub hsts: Option<String>,
    /// `http_cors_origins` (normalised by [`super::cors::parse_origin`]): origins whose pages
    /// may use the API from a browser. Empty: CORS off.
    pub cors_origins: Vec<String>,
}

/// Open `/api/events` streams against `http_max_event_streams`, shared by all connections. A
/// stream takes a slot when its request is answered and the runtime releases it when the
/// stream ends.
#[derive(Debug)]
pub struct EventSlots {
    open: std::sync::atomic::AtomicUsize,
    max: usize,
}

impl EventSlots {
    pub fn new(max: usize) -> Self {
        EventSlots {
            open: std::sync::atomic::AtomicUsize::new(0),
            max: max.max(1),
        }
    }

    /// Takes a slot; false when all are in use.
    pub fn try_take(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn release(&self) {
        use std::sync::atomic::Ordering;
        let _ = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub fn open(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            token: None,
            max_file_bytes: 4 << 30,
            head: HeadLimits::default(),
            multipart: MultipartLimits::default(),
            allowed_hosts: Vec::new(),
            secure: false,
            hsts: None,
            cors_origins: Vec::new(),
        }
    }
}

/// What the handler may touch while handling input.
pub struct Ctx<'a, B: Backend> {
    pub backend: &'a B,
    /// Shared by all connections; locked only while a head, login or logout is handled, never
    /// while body bytes go to the spool.
    pub sessions: &'a parking_lot::Mutex<Sessions>,
    pub config: &'a ServiceConfig,
    /// Seconds on the clock the sessions use.
    pub now: u64,
    /// Event stream slots (`http_max_event_streams`).
    pub events: &'a EventSlots,
}

const LOGIN_MAX_BODY: u64 = 4096;

enum State<U> {
    /// Between requests or reading a head.
    Idle,
    /// Reading and discarding a small body we do not need (e.g. a GET with a body).
    Discard,
    Login(Vec<u8>),
    Raw(Option<U>),
    Multipart {
        decoder: Box<MultipartDecoder>,
        sink: Option<U>,
        conference: String,
        authed: bool,
        /// The query's `to` values (the form's are read before the file part).
        query_to: Vec<String>,
    },
    Events,
    Closed,
}

/// One HTTP connection.
pub struct Connection<U: UploadSink> {
    reader: RequestReader,
    pending: Vec<u8>,
    out: Vec<u8>,
    state: State<U>,
    keep_alive: bool,
    close: bool,
    /// `Strict-Transport-Security: …\r\n` (HTTPS), put after each response's status line;
    /// empty: none.
    hsts_line: String,
    /// `; Secure` on the session cookie.
    secure: bool,
    /// CORS header lines for the responses to the current request (empty: none).
    cors: String,
}

impl<U: UploadSink> Connection<U> {
    pub fn new(config: &ServiceConfig) -> Self {
        Connection {
            reader: RequestReader::new(config.head),
            pending: Vec::new(),
            out: Vec::new(),
            state: State::Idle,
            keep_alive: true,
            close: false,
            hsts_line: config
                .hsts
                .as_ref()
                .filter(|v| !v.contains(['\r', '\n']))
                .map(|v| format!("Strict-Transport-Security: {v}\r\n"))
                .unwrap_or_default(),
            secure: config.secure,
            cors: String::new(),
        }
    }

    /// Bytes to write to the socket (drained).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Close once the output is written.
    pub fn wants_close(&self) -> bool {
        self.close
    }

    /// The connection has become a Server-Sent Events stream.
    pub fn is_event_stream(&self) -> bool {
        matches!(self.state, State::Events)
    }

    /// Whether an upload is in progress (for the runtime's no-progress timeout: on expiry call
    /// [`Connection::handle_timeout`]).
    pub fn in_request(&self) -> bool {
        !matches!(self.state, State::Idle | State::Events | State::Closed)
            || !self.pending.is_empty()
    }

    /// Between requests or inside a request head (nothing of a request has been acted on): the
    /// runtime may close such a connection to make room, and times the head
    /// ([`Connection::has_partial_head`]).
    pub fn awaiting_head(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Some bytes of a request head arrived but not all of it.
    pub fn has_partial_head(&self) -> bool {
        matches!(self.state, State::Idle) && !self.pending.is_empty()
    }

    /// No progress for too long: 408, upload aborted, close.
    pub fn handle_timeout(&mut self) {
        self.fail_upload(&HttpError::BodyTruncated);
        self.respond(error_response(408, "no progress", true, None));
        self.close = true;
        self.state = State::Closed;
    }

    /// The peer closed its side.
    pub fn handle_eof(&mut self) {
        if let Err(e) = self.reader.eof() {
            self.fail_upload(&e);
        } else if matches!(self.state, State::Raw(_) | State::Multipart { .. }) {
            self.fail_upload(&HttpError::BodyTruncated);
        }
        self.state = State::Closed;
        self.close = true;
    }

    /// Feeds bytes read from the socket.
    pub fn handle_input<B: Backend<Upload = U>>(&mut self, data: &[u8], ctx: &mut Ctx<'_, B>) {
        if matches!(self.state, State::Closed | State::Events) || self.close {
            return;
        }
        if self.pending.is_empty() {
            let used = self.process(data, ctx);
            if !self.close {
                self.pending.extend_from_slice(&data[used..]);
            }
        } else {
            let mut buf = std::mem::take(&mut self.pending);
            buf.extend_from_slice(data);
            let used = self.process(&buf, ctx);
            buf.drain(..used);
            if !self.close {
                self.pending = buf;
            }
        }
    }

    fn process<B: Backend<Upload = U>>(&mut self, input: &[u8], ctx: &mut Ctx<'_, B>) -> usize {
        let mut pos = 0;
        while !self.close && !matches!(self.state, State::Events | State::Closed) {
            let (n, ev) = match self.reader.feed(&input[pos..]) {
                Ok(x) => x,
                Err(e) => {
                    self.fail(&e);
                    return input.len();
                }
            };
            pos += n;
            match ev {
                ReadEvent::NeedMore => break,
                ReadEvent::Head(head) => self.on_head(head, ctx),
                ReadEvent::Body(b) => self.on_body(b, ctx),
                ReadEvent::End => self.on_end(ctx),
            }
        }
        pos
    }

    /// A request-level error: answer it, abort any upload, close.
    fn fail(&mut self, e: &HttpError) {
        self.fail_upload(e);
        self.respond(http_error_response(e));
        self.close = true;
        self.state = State::Closed;
    }

    fn fail_upload(&mut self, e: &HttpError) {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Raw(Some(s)) => s.abort(e),
            State::Multipart { sink: Some(s), .. } => s.abort(e),
            other => self.state = other,
        }
    }

    /// Appends a response (with the CORS headers of the current request, if any, and HSTS
    /// over HTTPS).
    fn respond(&mut self, bytes: Vec<u8>) {
        let bytes = super::cors::splice(bytes, &self.cors);
        let bytes = super::cors::splice(bytes, &self.hsts_line);
        self.out.extend_from_slice(&bytes);
    }

    /// The session cookie's attributes for this connection (`Secure` over HTTPS).
    fn cookie(&self, value: String) -> String {
        if self.secure {
            value + "; Secure"
        } else {
            value
        }
    }

    fn error(&mut self, status: u16, reason: &str, allow: Option<&str>) {
        let close = !self.keep_alive;
        self.respond(error_response(status, reason, close, allow));
    }

    /// Answers before the body was read: the body is then discarded if small, else the
    /// connection closes (never read a large body just to drop it).
    fn early_answer(&mut self, head: &RequestHead, bytes: Vec<u8>) {
        self.respond(bytes);
        let small = !head.chunked && head.content_length.unwrap_or(0) <= LOGIN_MAX_BODY;
        if small && self.keep_alive && self.reader.begin_body(head, None, false).is_ok() {
            self.state = State::Discard;
            return;
        }
        self.close = true;
        self.state = State::Closed;
    }

    fn on_head<B: Backend<Upload = U>>(&mut self, head: RequestHead, ctx: &mut Ctx<'_, B>) {
        self.keep_alive = head.keep_alive;
        let close = !self.keep_alive;
        let cors_origin = super::cors::listed_origin(&head, &ctx.config.cors_origins);
        self.cors = cors_origin
            .as_deref()
            .map(super::cors::response_headers)
            .unwrap_or_default();
        if !ctx.config.cors_origins.is_empty() && super::cors::is_preflight(&head) {
            self.cors.clear();
            let bytes = super::cors::preflight_response(&head, &ctx.config.cors_origins, close);
            return self.early_answer(&head, bytes);
        }
        let r = match route(&head.method, &head.path) {
            Ok(r) => r,
            Err(e) => {
                let (status, reason, allow) = match &e {
                    RouteError::NotFound => (404, "no such resource", None),
                    RouteError::MethodNotAllowed { allow } => {
                        (405, "method not allowed", Some(*allow))
                    }
                    RouteError::BadPath(h) => (400, h.reason(), None),
                };
                let bytes = error_response(status, reason, close, allow);
                return self.early_answer(&head, bytes);
            }
        };
        if ctx.config.token.is_none() {
            // Open mode is for this machine only: refuse other names (DNS rebinding) and
            // requests a foreign page makes the browser send (cross-site POST).
            if !host_allowed(&head, &ctx.config.allowed_hosts) {
                let bytes = error_response(
                    421,
                    "Host is not this server (http_allowed_hosts)",
                    close,
                    None,
                );
                return self.early_answer(&head, bytes);
            }
            if cors_origin.is_none() && !origin_allowed(&head, &ctx.config.allowed_hosts) {
                let bytes = error_response(
                    403,
                    "cross-origin request refused (http_allowed_hosts)",
                    close,
                    None,
                );
                return self.early_answer(&head, bytes);
            }
        }
        let auth = authorize(
            &head,
            ctx.config.token.as_deref(),
            &ctx.sessions.lock(),
            ctx.now,
        );
        let multipart_upload = matches!(r, Route::Upload { .. })
            && head.content_type.as_deref().is_some_and(is_multipart_form);
        // Only a form without a Bearer token may authenticate in its body (the `token` field,
        // within the bounded bytes before the file part); a wrong Bearer token is refused
        // before any body byte is read.
        let form_may_authenticate =
            multipart_upload && !matches!(credential(&head), Credential::Bearer(_));
        if r.needs_auth() && !auth.allowed() && !form_may_authenticate {
            let bytes = error_response(401, "missing or wrong token", close, None);
            return self.early_answer(&head, bytes);
        }
        let body_err = |s: &mut Self, e: HttpError| s.fail(&e);
        match r {
            Route::Page => {
                let conf = head.query_param("conference");
                let bytes = page_response(conf.as_deref(), close);
                self.early_answer(&head, bytes)
            }
            Route::OpenApi => {
                let bytes = super::openapi::openapi_response(close);
                self.early_answer(&head, bytes)
            }
            Route::Conferences => {
                let bytes = json_response(200, &ctx.backend.conferences_json(), close);
                self.early_answer(&head, bytes)
            }
            Route::Conference { id } => {
                let bytes = match ctx.backend.conference_json(&id) {
                    Some(j) => json_response(200, &j, close),
                    None => error_response(404, "unknown conference", close, None),
                };
                self.early_answer(&head, bytes)
            }
            Route::ConferenceTransfers { id } => {
                let bytes = match ctx.backend.conference_transfers_json(&id) {
                    Some(j) => json_response(200, &j, close),
                    None => error_response(404, "unknown conference", close, None),
                };
                self.early_answer(&head, bytes)
            }
            Route::Transfer { id } => {
                let bytes = match ctx.backend.transfer_json(&id) {
                    Some(j) => json_response(200, &j, close),
                    None => error_response(404, "unknown transfer", close, None),
                };
                self.early_answer(&head, bytes)
            }
            Route::CancelTransfer { id } => {
                let bytes = if ctx.backend.cancel(&id) {
                    ResponseHead::new(204).connection(close).to_bytes()
                } else {
                    error_response(404, "unknown transfer", close, None)
                };
                self.early_answer(&head, bytes)
            }
            Route::Metrics => {
                let body = ctx.backend.metrics();
                let mut bytes = ResponseHead::new(200)
                    .content_type("text/plain; version=0.0.4; charset=utf-8")
                    .content_length(body.len() as u64)
                    .connection(close)
                    .to_bytes();
                bytes.extend_from_slice(body.as_bytes());
                self.early_answer(&head, bytes)
            }
            Route::Events => {
                if !ctx.events.try_take() {
                    let reason = format!(
                        "too many event streams (http_max_event_streams {})",
                        ctx.events.max()
                    );
                    let bytes = error_response(503, &reason, close, None);
                    return self.early_answer(&head, bytes);
                }
                self.respond(sse_head());
                self.state = State::Events;
            }
            Route::Logout => {
                if let Some(k) = head
                    .header_all("cookie")
                    .find_map(|c| cookie(c, COOKIE_NAME))
                {
                    ctx.sessions.lock().revoke(k);
                }
                let bytes = see_other("/", Some(self.cookie(clear_cookie())), close);
                self.early_answer(&head, bytes)
            }
            Route::Login => {
                if head.expect_continue {
                    self.out.extend_from_slice(CONTINUE_100);
                }
                match self.reader.begin_body(&head, Some(LOGIN_MAX_BODY), false) {
                    Ok(()) => self.state = State::Login(Vec::new()),
                    Err(e) => body_err(self, e),
                }
            }
            Route::Upload { conference } => {
                if let Err(e) = self
                    .reader
                    .begin_body(&head, Some(ctx.config.max_file_bytes), true)
                {
                    return body_err(self, e);
                }
                let query_to = match query_values(&head, "to") {
                    Ok(v) => v,
                    Err(reason) => {
                        let bytes = error_response(400, &reason, true, None);
                        self.respond(bytes);
                        self.close = true;
                        self.state = State::Closed;
                        return;
                    }
                };
                if multipart_upload {
                    let ct = head.content_type.as_deref().unwrap_or_default();
                    match MultipartDecoder::new(ct, ctx.config.multipart) {
                        Ok(d) => {
                            self.state = State::Multipart {
                                decoder: Box::new(d),
                                sink: None,
                                conference,
                                authed: auth.allowed(),
                                query_to,
                            }
                        }
                        Err(e) => return body_err(self, e),
                    }
                } else {
                    let filename = match head.header("content-disposition") {
                        Some(v) => match parse_content_disposition(v) {
                            Ok(d) => d.filename.unwrap_or_default(),
                            Err(e) => return body_err(self, e),
                        },
                        None => String::new(),
                    };
                    let to = match recipients(query_to.iter().map(String::as_str)) {
                        Ok(to) => to,
                        Err(reason) => {
                            let bytes = error_response(400, &reason, true, None);
                            self.respond(bytes);
                            self.close = true;
                            self.state = State::Closed;
                            return;
                        }
                    };
                    let req = UploadRequest {
                        conference,
                        filename: if filename.is_empty() {
                            "upload".into()
                        } else {
                            filename
                        },
                        content_type: head
                            .content_type
                            .clone()
                            .unwrap_or_else(|| "application/octet-stream".into()),
                        size: head.content_length,
                        to,
                    };
                    match ctx.backend.start_upload(req) {
                        Ok(sink) => self.state = State::Raw(Some(sink)),
                        Err(r) => {
                            let bytes = error_response(r.status(), r.reason(), true, None);
                            self.respond(bytes);
                            self.close = true;
                            self.state = State::Closed;
                            return;
                        }
                    }
                }
                if head.expect_continue {
                    self.out.extend_from_slice(CONTINUE_100);
                }
            }
        }
    }

    fn on_body<B: Backend<Upload = U>>(&mut self, data: &[u8], ctx: &mut Ctx<'_, B>) {
        match &mut self.state {
            State::Discard => {}
            State::Login(buf) => buf.extend_from_slice(data),
            State::Raw(Some(sink)) => {
                if let Err(r) = sink.write(data) {
                    self.refuse_mid_upload(r);
                }
            }
            State::Multipart { .. } => self.on_multipart(data, ctx),
            _ => {}
        }
    }

    fn refuse_mid_upload(&mut self, r: Refusal) {
        let e = if r.status() == 413 {
            HttpError::PayloadTooLarge
        } else {
            HttpError::BodyTruncated
        };
        self.fail_upload(&e);
        self.respond(error_response(r.status(), r.reason(), true, None));
        self.close = true;
        self.state = State::Closed;
    }

    fn on_multipart<B: Backend<Upload = U>>(&mut self, mut data: &[u8], ctx: &mut Ctx<'_, B>) {
        loop {
            let State::Multipart {
                decoder,
                sink,
                conference,
                authed,
                query_to,
            } = &mut self.state
            else {
                return;
            };
            let (n, ev) = match decoder.decode(data) {
                Ok(x) => x,
                Err(e) => return self.fail(&e),
            };
            let mut refusal = None;
            let mut stop = false;
            match ev {
                MultipartEvent::PartStart {
                    filename,
                    content_type,
                    ..
                } => {
                    // Without a header credential, the form's `token` field (sent before the
                    // file) must match.
                    let field_ok = ctx.config.token.as_deref().is_some_and(|t| {
                        decoder.field("token").is_some_and(|g| {
                            super::auth::constant_time_eq(g.as_bytes(), t.as_bytes())
                        })
                    });
                    // The query's `to`, then the form's `to` fields sent before the file.
                    let to = recipients(
                        query_to.iter().map(String::as_str).chain(
                            decoder
                                .fields()
                                .iter()
                                .filter(|(n, _)| n == "to")
                                .map(|(_, v)| v.as_str()),
                        ),
                    );
                    if !*authed && !field_ok {
                        refusal = Some((401, "missing or wrong token".to_string()));
                    } else if let Err(reason) = &to {
                        refusal = Some((400, reason.clone()));
                    } else {
                        let req = UploadRequest {
                            conference: conference.clone(),
                            filename: if filename.is_empty() {
                                "upload".into()
                            } else {
                                filename
                            },
                            content_type: content_type
                                .unwrap_or_else(|| "application/octet-stream".into()),
                            size: None,
                            to: to.ok().flatten(),
                        };
                        match ctx.backend.start_upload(req) {
                            Ok(s) => *sink = Some(s),
                            Err(r) => refusal = Some((r.status(), r.reason().to_string())),
                        }
                    }
                }
                MultipartEvent::Data(d) => {
                    if let Some(s) = sink.as_mut() {
                        if let Err(r) = s.write(d) {
                            return self.refuse_mid_upload(r);
                        }
                    }
                }
                MultipartEvent::PartEnd => {}
                MultipartEvent::NeedMore | MultipartEvent::Done => stop = true,
            }
            if let Some((status, reason)) = refusal {
                self.respond(error_response(status, &reason, true, None));
                self.close = true;
                self.state = State::Closed;
                return;
            }
            if stop {
                return;
            }
            data = &data[n..];
        }
    }

    fn on_end<B: Backend<Upload = U>>(&mut self, ctx: &mut Ctx<'_, B>) {
        let close = !self.keep_alive;
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Login(body) => {
                let body = String::from_utf8_lossy(&body);
                if let Some(t) = ctx.config.token.as_deref() {
                    let mut sessions = ctx.sessions.lock();
                    if let Err(wait) = sessions.login.check(ctx.now) {
                        drop(sessions);
                        let reason = "too many failed logins (http_login_max_failures)";
                        let body = super::response::json_error("too_many_requests", reason);
                        let mut bytes = ResponseHead::new(429)
                            .content_type("application/json")
                            .content_length(body.len() as u64)
                            .header("Retry-After", wait.to_string())
                            .connection(close)
                            .to_bytes();
                        bytes.extend_from_slice(body.as_bytes());
                        self.respond(bytes);
                        if close {
                            self.close = true;
                        }
                        return;
                    }
                    if !login_form_ok(&body, t) {
                        sessions.login.failed(ctx.now);
                        drop(sessions);
                        return self.error(401, "wrong token", None);
                    }
                }
                let issued = {
                    let mut sessions = ctx.sessions.lock();
                    sessions.issue(ctx.now).map(|k| (k, sessions.ttl_secs()))
                };
                match issued {
                    Ok((key, ttl)) => {
                        let c = self.cookie(session_cookie(&key, ttl));
                        self.respond(see_other("/", Some(c), close));
                    }
                    Err(_) => self.error(500, "no randomness for a session key", None),
                }
            }
            State::Raw(Some(sink)) => self.finish_upload(sink, close),
            State::Multipart { decoder, sink, .. } => {
                if let Err(e) = decoder.finish() {
                    if let Some(s) = sink {
                        s.abort(&e);
                    }
                    self.state = State::Closed;
                    return self.fail(&e);
                }
                match sink {
                    Some(s) => self.finish_upload(s, close),
                    None => self.fail(&HttpError::MultipartNoFile),
                }
            }
            _ => {}
        }
        if close {
            self.close = true;
        }
    }

    fn finish_upload(&mut self, sink: U, close: bool) {
        let id = sink.transfer_id().to_string();
        match sink.finish() {
            Ok(()) => {
                let body = upload_created_body(&id);
                let mut bytes = ResponseHead::new(201)
                    .content_type("application/json")
                    .content_length(body.len() as u64)
                    .header(
                        "Location",
                        format!("/api/transfers/{}", super::params::percent_encode(&id)),
                    )
                    .connection(close)
                    .to_bytes();
                bytes.extend_from_slice(body.as_bytes());
                self.respond(bytes);
            }
            Err(r) => self.error(r.status(), r.reason(), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[derive(Default)]
    struct Log {
        started: Vec<UploadRequest>,
        data: Vec<u8>,
        finished: u32,
        aborted: Vec<HttpError>,
        cancelled: Vec<String>,
    }

    struct Fake {
        log: Rc<RefCell<Log>>,
        refuse: Option<Refusal>,
    }

    struct Sink(Rc<RefCell<Log>>);

    impl UploadSink for Sink {
        fn transfer_id(&self) -> &str {
            "t1"
        }
        fn write(&mut self, data: &[u8]) -> Result<(), Refusal> {
            let mut l = self.0.borrow_mut();
            l.data.extend_from_slice(data);
            if l.data.len() > 1000 {
                return Err(Refusal::TooLarge);
            }
            Ok(())
        }
        fn finish(self) -> Result<(), Refusal> {
            self.0.borrow_mut().finished += 1;
            Ok(())
        }
        fn abort(self, reason: &HttpError) {
            self.0.borrow_mut().aborted.push(reason.clone());
        }
    }

    impl Backend for Fake {
        type Upload = Sink;
        fn conferences_json(&self) -> String {
            r#"{"conferences":[]}"#.into()
        }
        fn conference_json(&self, id: &str) -> Option<String> {
            (id == "4711").then(|| r#"{"id":"4711"}"#.into())
        }
        fn conference_transfers_json(&self, id: &str) -> Option<String> {
            (id == "4711").then(|| r#"{"conference":"4711","transfers":[]}"#.into())
        }
        fn transfer_json(&self, id: &str) -> Option<String> {
            (id == "t1").then(|| r#"{"id":"t1"}"#.into())
        }
        fn cancel(&self, id: &str) -> bool {
            self.log.borrow_mut().cancelled.push(id.into());
            id == "t1"
        }
        fn metrics(&self) -> String {
            "msrpcast_uploads_total 0\n".into()
        }
        fn start_upload(&self, req: UploadRequest) -> Result<Sink, Refusal> {
            if let Some(r) = &self.refuse {
                return Err(r.clone());
            }
            self.log.borrow_mut().started.push(req);
            Ok(Sink(self.log.clone()))
        }
    }

    struct Run {
        out: String,
        closed: bool,
        events: bool,
        log: Rc<RefCell<Log>>,
    }

    fn run_with(input: &[u8], piece: usize, token: Option<&str>, refuse: Option<Refusal>) -> Run {
        let log = Rc::new(RefCell::new(Log::default()));
        let fake = Fake {
            log: log.clone(),
            refuse,
        };
        let config = ServiceConfig {
            token: token.map(str::to_string),
            max_file_bytes: 5000,
            ..ServiceConfig::default()
        };
        let sessions = parking_lot::Mutex::new(Sessions::new(8, 3600));
        let events = EventSlots::new(4);
        let mut conn: Connection<Sink> = Connection::new(&config);
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            let mut ctx = Ctx {
                backend: &fake,
                sessions: &sessions,
                config: &config,
                now: 1,
                events: &events,
            };
            conn.handle_input(chunk, &mut ctx);
            out.extend(conn.take_output());
        }
        Run {
            out: String::from_utf8_lossy(&out).into_owned(),
            closed: conn.wants_close(),
            events: conn.is_event_stream(),
            log,
        }
    }

    fn run(input: &str, token: Option<&str>) -> Run {
        run_with(input.as_bytes(), input.len().max(1), token, None)
    }

    #[test]
    fn raw_upload_streams_to_the_sink() {
        let req = "POST /conferences/4711/files HTTP/1.1\r\nAuthorization: Bearer T\r\n\
Content-Type: text/plain\r\nContent-Length: 11\r\n\
Content-Disposition: attachment; filename*=UTF-8''a%20b.txt\r\n\r\nhello world";
        for piece in [1, 3, req.len()] {
            let r = run_with(req.as_bytes(), piece, Some("T"), None);
            assert!(r.out.starts_with("HTTP/1.1 201 Created\r\n"), "{}", r.out);
            assert!(r
                .out
                .ends_with(r#"{"transfer":"t1","status":"/api/transfers/t1"}"#));
            let l = r.log.borrow();
            assert_eq!(l.data, b"hello world");
            assert_eq!(l.finished, 1);
            assert_eq!(l.started[0].filename, "a b.txt");
            assert_eq!(l.started[0].size, Some(11));
        }
    }

    #[test]
    fn multipart_upload_with_token_field() {
        let body = "--B\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nT\r\n\
--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.bin\"\r\n\r\nDATA\r\n--B--\r\n";
        let req = format!(
            "POST /conferences/4711/files HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=B\r\n\
Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        for piece in [1, 7, req.len()] {
            let r = run_with(req.as_bytes(), piece, Some("T"), None);
            assert!(r.out.starts_with("HTTP/1.1 201 "), "{}", r.out);
            assert_eq!(r.log.borrow().data, b"DATA");
        }
        let wrong = req.replace("\r\n\r\nT\r\n", "\r\n\r\nX\r\n");
        let r = run(&wrong, Some("T"));
        assert!(r.out.starts_with("HTTP/1.1 401 "), "{}", r.out);
        assert!(r.log.borrow().started.is_empty() && r.closed);
        // A wrong Bearer token is refused at the head, the body unread (finding 14 of issue 14).
        let bearer = req.replacen("HTTP/1.1\r\n", "HTTP/1.1\r\nAuthorization: Bearer X\r\n", 1);
        let head_only = &bearer[..bearer.find("\r\n\r\n").unwrap() + 4];
        let r = run(head_only, Some("T"));
        assert!(r.out.starts_with("HTTP/1.1 401 "), "{}", r.out);
    }

    /// `?to=` and the form's `to` fields (before the file) choose the recipients; a list
    /// naming nobody is 400 before the upload starts.
    #[test]
    fn chosen_recipients_from_query_and_form() {
        let raw = |q: &str| {
            format!(
                "POST /conferences/4711/files{q} HTTP/1.1\r\nAuthorization: Bearer T\r\n\
Content-Length: 2\r\n\r\nhi"
            )
        };
        let r = run(&raw("?to=a,%20b&x=1&to=c"), Some("T"));
        assert!(r.out.starts_with("HTTP/1.1 201 "), "{}", r.out);
        let want = |v: &[&str]| Some(v.iter().map(|k| k.to_string()).collect::<Vec<_>>());
        assert_eq!(r.log.borrow().started[0].to, want(&["a", "b", "c"]));
        let r = run(&raw(""), Some("T"));
        assert_eq!(r.log.borrow().started[0].to, None);
        for q in ["?to=", "?to=,,", "?to=%ZZ"] {
            let r = run(&raw(q), Some("T"));
            assert!(r.out.starts_with("HTTP/1.1 400 "), "{q}: {}", r.out);
            assert!(r.log.borrow().started.is_empty() && r.closed, "{q}");
        }
        let body = "--B\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\nk1\r\n\
--B\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\nk2,k3\r\n\
--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.bin\"\r\n\r\nDATA\r\n--B--\r\n";
        let form = |q: &str, body: &str| {
            format!(
                "POST /conferences/4711/files{q} HTTP/1.1\r\nAuthorization: Bearer T\r\n\
Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        for piece in [1, 9, 1000] {
            let req = form("?to=k0", body);
            let r = run_with(req.as_bytes(), piece, Some("T"), None);
            assert!(r.out.starts_with("HTTP/1.1 201 "), "{}", r.out);
            assert_eq!(
                r.log.borrow().started[0].to,
                want(&["k0", "k1", "k2", "k3"])
            );
        }
        let empty = body.replace("k2,k3", " ").replace("k1", ",");
        let r = run(&form("", &empty), Some("T"));
        assert!(r.out.starts_with("HTTP/1.1 400 "), "{}", r.out);
        assert!(r.out.contains("empty recipient list"), "{}", r.out);
        assert!(r.log.borrow().started.is_empty());
        // The engine's refusal of an unknown key is a 400 with its reason.
        let why = "no participant \"zed\" in conference \"4711\"".to_string();
        let r = run_with(
            raw("?to=zed").as_bytes(),
            1000,
            Some("T"),
            Some(Refusal::BadRecipients(why)),
        );
        assert!(r.out.starts_with("HTTP/1.1 400 "), "{}", r.out);
        assert!(r.out.contains(r#"no participant \"zed\""#), "{}", r.out);
    }

    #[test]
    fn auth_on_every_protected_route() {
        for (m, p) in [
            ("GET", "/api/conferences"),
            ("GET", "/api/conferences/4711"),
            ("GET", "/api/transfers/t1"),
            ("DELETE", "/api/transfers/t1"),
            ("GET", "/api/events"),
            ("GET", "/metrics"),
            ("POST", "/conferences/4711/files"),
        ] {
            let r = run(
                &format!("{m} {p} HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
                Some("T"),
            );
            assert!(r.out.starts_with("HTTP/1.1 401 "), "{m} {p}: {}", r.out);
            let r = run(
                &format!(
                    "{m} {p} HTTP/1.1\r\nAuthorization: Bearer T\r\nContent-Length: 1\r\n\r\nx"
                ),
                Some("T"),
            );
            assert!(!r.out.starts_with("HTTP/1.1 401 "), "{m} {p}: {}", r.out);
        }
        let r = run("GET / HTTP/1.1\r\n\r\n", Some("T"));
        assert!(r.out.starts_with("HTTP/1.1 200 ") && r.out.contains("<!DOCTYPE html>"));
    }

    #[test]
    fn login_sets_a_session_cookie_that_works() {
        let r = run(
            "POST /login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
Content-Length: 7\r\n\r\ntoken=T",
            Some("T"),
        );
        assert!(r.out.starts_with("HTTP/1.1 303 "), "{}", r.out);
        assert!(r.out.contains("HttpOnly; SameSite=Strict; Path=/"));
        let r = run(
            "POST /login HTTP/1.1\r\nContent-Length: 7\r\n\r\ntoken=X",
            Some("T"),
        );
        assert!(r.out.starts_with("HTTP/1.1 401 "), "{}", r.out);
    }

    /// Over HTTPS every response carries HSTS once, right after its status line, and the
    /// session cookie (set and cleared) is `Secure`; over plain HTTP neither.
    #[test]
    fn https_responses_carry_hsts_and_a_secure_cookie() {
        let req = "POST /login HTTP/1.1\r\nContent-Length: 7\r\n\r\ntoken=T\
GET /api/conferences HTTP/1.1\r\nAuthorization: Bearer T\r\n\r\n\
GET /api/transfers/nope HTTP/1.1\r\nAuthorization: Bearer T\r\n\r\n\
POST /logout HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        for https in [true, false] {
            let fake = Fake {
                log: Rc::new(RefCell::new(Log::default())),
                refuse: None,
            };
            let config = ServiceConfig {
                token: Some("T".into()),
                secure: https,
                hsts: https.then(|| "max-age=600".to_string()),
                ..ServiceConfig::default()
            };
            let sessions = parking_lot::Mutex::new(Sessions::new(8, 3600));
            let events = EventSlots::new(4);
            let mut conn: Connection<Sink> = Connection::new(&config);
            let mut ctx = Ctx {
                backend: &fake,
                sessions: &sessions,
                config: &config,
                now: 1,
                events: &events,
            };
            conn.handle_input(req.as_bytes(), &mut ctx);
            let out = String::from_utf8(conn.take_output()).unwrap();
            let responses: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
            assert_eq!(responses.len(), 4, "{out}");
            for r in &responses {
                let hsts = r
                    .matches("\r\nStrict-Transport-Security: max-age=600\r\n")
                    .count();
                assert_eq!(hsts, usize::from(https), "{r}");
            }
            let cookies: Vec<&str> = out
                .lines()
                .filter(|l| l.starts_with("Set-Cookie: "))
                .collect();
            assert_eq!(cookies.len(), 2, "{out}");
            for c in cookies {
                assert_eq!(c.ends_with("; Secure"), https, "{c}");
            }
        }
    }

    #[test]
    fn keep_alive_pipelining_and_statuses() {
        let req = "GET /api/conferences HTTP/1.1\r\n\r\nGET /api/transfers/nope HTTP/1.1\r\n\r\n\
DELETE /api/transfers/t1 HTTP/1.1\r\n\r\nPUT /api/events HTTP/1.1\r\nContent-Length: 2\r\n\r\nxx\
GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n";
        let r = run_with(req.as_bytes(), 5, None, None);
        let statuses: Vec<&str> = r
            .out
            .match_indices("HTTP/1.1 ")
            .map(|(i, _)| &r.out[i + 9..i + 12])
            .collect();
        assert_eq!(statuses, ["200", "404", "204", "405", "200"], "{}", r.out);
        assert!(r.out.contains("Allow: GET\r\n"));
        assert!(r.closed);
        assert_eq!(r.log.borrow().cancelled, ["t1"]);
    }

    #[test]
    fn limits_and_refusals() {
        let big = "POST /conferences/4711/files HTTP/1.1\r\nContent-Length: 6000\r\n\r\n";
        let r = run(big, None);
        assert!(r.out.starts_with("HTTP/1.1 413 ") && r.closed, "{}", r.out);
        // Chunked body over the sink's limit mid-way: 413, sink aborted.
        let mut chunked = String::from(
            "POST /conferences/4711/files HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        for _ in 0..3 {
            chunked.push_str(&format!("190\r\n{}\r\n", "z".repeat(400)));
        }
        let r = run(&chunked, None);
        assert!(r.out.starts_with("HTTP/1.1 413 "), "{}", r.out);
        assert_eq!(r.log.borrow().aborted, [HttpError::PayloadTooLarge]);
        let r = run_with(
            b"POST /conferences/9/files HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
            100,
            None,
            Some(Refusal::UnknownConference),
        );
        assert!(r.out.starts_with("HTTP/1.1 404 "), "{}", r.out);
        let r = run_with(
            b"POST /conferences/9/files HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
            100,
            None,
            Some(Refusal::NoParticipants),
        );
        assert!(r.out.starts_with("HTTP/1.1 409 "), "{}", r.out);
        let r = run("POST /conferences/1/files HTTP/1.1\r\n\r\n", None);
        assert!(r.out.starts_with("HTTP/1.1 411 "), "{}", r.out);
        let r = run(
            "POST /conferences/1/files HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            None,
        );
        assert!(
            r.out.starts_with("HTTP/1.1 400 ") && r.out.contains("chunk size"),
            "{}",
            r.out
        );
        assert_eq!(r.log.borrow().aborted.len(), 1);
        let r = run(
            &format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(17000)),
            None,
        );
        assert!(r.out.starts_with("HTTP/1.1 431 "), "{}", r.out);
    }

    /// Finding 6 of issue 14: without a token, a cross-site `text/plain` POST (foreign Origin)
    /// got 201, and a request naming a rebound DNS name was served.
    #[test]
    fn open_mode_refuses_foreign_origin_and_host() {
        let post = |extra: &str| {
            format!(
                "POST /conferences/4711/files HTTP/1.1\r\n{extra}Content-Type: text/plain\r\n\
Content-Length: 2\r\n\r\nhi"
            )
        };
        let r = run(
            &post("Host: 127.0.0.1:8088\r\nOrigin: http://evil.example\r\n"),
            None,
        );
        assert!(r.out.starts_with("HTTP/1.1 403 "), "{}", r.out);
        assert!(r.log.borrow().started.is_empty());
        let r = run(&post("Host: evil.example:8088\r\n"), None);
        assert!(r.out.starts_with("HTTP/1.1 421 "), "{}", r.out);
        assert!(r.log.borrow().started.is_empty());
        let r = run(
            "GET /api/conferences HTTP/1.1\r\nHost: rebound.example:8088\r\n\r\n",
            None,
        );
        assert!(r.out.starts_with("HTTP/1.1 421 "), "{}", r.out);
        // The page itself, and scripts without Origin, still work.
        let r = run(
            &post("Host: 127.0.0.1:8088\r\nOrigin: http://127.0.0.1:8088\r\n"),
            None,
        );
        assert!(r.out.starts_with("HTTP/1.1 201 "), "{}", r.out);
        let r = run(&post("Host: localhost\r\n"), None);
        assert!(r.out.starts_with("HTTP/1.1 201 "), "{}", r.out);
        // With a token the checks do not apply (proxies may rewrite Host; auth decides).
        let r = run(
            &post("Host: files.example.com\r\nOrigin: https://files.example.com\r\nAuthorization: Bearer T\r\n"),
            Some("T"),
        );
        assert!(r.out.starts_with("HTTP/1.1 201 "), "{}", r.out);
    }

    /// Finding 15 of issue 14: `POST /login` could be tried without limit.
    #[test]
    fn failed_logins_are_throttled() {
        let wrong = "POST /login HTTP/1.1\r\nContent-Length: 7\r\n\r\ntoken=X";
        let right = "POST /login HTTP/1.1\r\nContent-Length: 7\r\n\r\ntoken=T";
        let mut input = wrong.repeat(25);
        input.push_str(right);
        let r = run(&input, Some("T"));
        let statuses: Vec<&str> = r
            .out
            .match_indices("HTTP/1.1 ")
            .map(|(i, _)| &r.out[i + 9..i + 12])
            .collect();
        assert_eq!(statuses.len(), 26, "{}", r.out);
        // The default allowance is 20 failures a minute; then everything waits, the right
        // token too (else guessing would go on).
        assert!(statuses[..20].iter().all(|s| *s == "401"), "{statuses:?}");
        assert!(statuses[20..].iter().all(|s| *s == "429"), "{statuses:?}");
        assert!(r.out.contains("Retry-After: "), "{}", r.out);
    }

    #[test]
    fn event_streams_are_limited() {
        let r = run("GET /api/events HTTP/1.1\r\n\r\n", None);
        assert!(r.events);
        let config = ServiceConfig::default();
        let sessions = parking_lot::Mutex::new(Sessions::new(8, 3600));
        let events = EventSlots::new(2);
        let log = Rc::new(RefCell::new(Log::default()));
        let fake = Fake { log, refuse: None };
        let mut outs = Vec::new();
        for _ in 0..3 {
            let mut conn: Connection<Sink> = Connection::new(&config);
            let mut ctx = Ctx {
                backend: &fake,
                sessions: &sessions,
                config: &config,
                now: 1,
                events: &events,
            };
            conn.handle_input(b"GET /api/events HTTP/1.1\r\n\r\n", &mut ctx);
            outs.push((
                conn.is_event_stream(),
                String::from_utf8(conn.take_output()).unwrap(),
            ));
        }
        assert!(outs[0].0 && outs[1].0 && !outs[2].0);
        assert!(outs[2].1.starts_with("HTTP/1.1 503 "), "{}", outs[2].1);
        assert_eq!(events.open(), 2);
        events.release();
        assert!(events.try_take());
    }

    #[test]
    fn events_switches_the_connection() {
        let r = run("GET /api/events HTTP/1.1\r\n\r\n", None);
        assert!(r.events && r.out.contains("text/event-stream"));
    }
}
