//! The run's HTTP side: `/metrics` in Prometheus' format (`--metrics ADDR`), and the
//! live view (`--http ADDR`): a page served from the binary itself that shows the
//! tree as it is now and its events as they happen, with admin actions for whoever
//! holds the token printed at start.
//!
//! ```text
//!   GET  /              the page (embedded, works offline)
//!   GET  /api/tree      Host::inspect, as JSON
//!   GET  /api/events    the event stream, as server-sent events (JSON lines' shape)
//!   POST /api/command   one control command (Authorization: Bearer TOKEN)
//!   GET  /metrics       Prometheus (OpenMetrics text)
//! ```
//!
//! Reading is open to whoever reaches the address (bind it to loopback, the default
//! in the examples, or behind a proxy); changing the tree needs the token.

use crate::control;
use crate::line::{Line, Said};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use warden::events::Received;
use warden::runtime::{Host, HostReport};

/// The page, its script and style inline.
const PAGE: &str = include_str!("../assets/view.html");

/// The largest command body taken.
const MAX_COMMAND: usize = 1 << 20;

#[derive(Clone)]
struct Web {
    host: Host,
    base: PathBuf,
    token: Arc<str>,
    reports: Reports,
    /// A slot per event stream open: reading needs no token, so their number is
    /// bounded.
    streams: Arc<tokio::sync::Semaphore>,
}

/// The most event streams open at once; one more is answered 503.
pub(crate) const MAX_STREAMS: usize = 64;

/// The tree's reports, shared by every reader: one `Host::inspect` at a time, and a
/// report reused for up to [`STILL`] while no event was published since it was taken
/// (a report of a large tree is large, and every open page asks for one after each
/// change; readers waiting while one is taken share it when nothing changed).
#[derive(Clone)]
struct Reports {
    host: Host,
    last: Arc<tokio::sync::Mutex<Option<Report>>>,
}

struct Report {
    at: std::time::Instant,
    seq: u64,
    report: Arc<HostReport>,
}

const STILL: Duration = Duration::from_secs(1);
/// How long a report may take (a supervisor busy stopping a child answers late).
const INSPECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Reports {
    fn new(host: Host) -> Self {
        Self { host, last: Arc::default() }
    }

    async fn get(&self) -> Result<Arc<HostReport>, Response> {
        let unavailable = || {
            let error = format!("the tree did not answer within {INSPECT_TIMEOUT:?}");
            (StatusCode::SERVICE_UNAVAILABLE, error).into_response()
        };
        // Waiting for another reader's report is bounded as taking one is.
        let Ok(mut last) = tokio::time::timeout(INSPECT_TIMEOUT, self.last.lock()).await else {
            return Err(unavailable());
        };
        let seq = self.host.last_event_seq();
        if let Some(Report { at, seq: then, report }) = &*last
            && *then == seq
            && at.elapsed() < STILL
        {
            return Ok(Arc::clone(report));
        }
        let Ok(report) = tokio::time::timeout(INSPECT_TIMEOUT, self.host.inspect()).await else {
            return Err(unavailable());
        };
        let report = Arc::new(report);
        *last = Some(Report { at: std::time::Instant::now(), seq, report: Arc::clone(&report) });
        Ok(report)
    }
}

/// Serves `/metrics` only, until `stop` turns true.
pub(crate) async fn serve_metrics(listener: TcpListener, host: Host, stop: watch::Receiver<bool>) {
    let app = Router::new().route("/metrics", get(metrics)).with_state(Reports::new(host));
    serve(listener, app, stop).await;
}

/// Serves the live view (and `/metrics`) until `stop` turns true; admin commands need
/// `token`.
pub(crate) async fn serve_view(
    listener: TcpListener,
    host: Host,
    base: PathBuf,
    token: String,
    stop: watch::Receiver<bool>,
) {
    let reports = Reports::new(host.clone());
    let streams = Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS));
    let web = Web { host, base, token: token.into(), reports: reports.clone(), streams };
    let app = Router::new()
        .route("/", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE) }))
        .route("/api/tree", get(tree))
        .route("/api/events", get(events))
        .route("/api/command", post(command))
        .with_state(web)
        .merge(Router::new().route("/metrics", get(metrics)).with_state(reports));
    serve(listener, app, stop).await;
}

async fn serve(listener: TcpListener, app: Router, mut stop: watch::Receiver<bool>) {
    let stopped = async move { control::stopped(&mut stop).await };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
        tracing::warn!("HTTP server: {e}");
    }
}

async fn metrics(State(reports): State<Reports>) -> Response {
    match reports.get().await {
        Ok(report) => {
            let text = crate::metrics::encode(&report);
            ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
        }
        Err(unavailable) => unavailable,
    }
}

async fn tree(State(web): State<Web>) -> Response {
    let report = match web.reports.get().await {
        Ok(report) => report,
        Err(unavailable) => return unavailable,
    };
    let body = serde_json::json!({ "report": &*report, "ts_us": web.host.clock_us() });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The tree's events from now on, each as the JSON line `warden run` would print; a
/// stream that falls behind says so (`events_dropped`), as stdout does.
async fn events(State(web): State<Web>) -> Response {
    let Ok(slot) = Arc::clone(&web.streams).try_acquire_owned() else {
        let error = format!("too many event streams open (the most is {MAX_STREAMS})");
        return (StatusCode::SERVICE_UNAVAILABLE, error).into_response();
    };
    let events = web.host.subscribe();
    let host = web.host.clone();
    // The slot goes with the stream, when the client goes or the tree ends.
    let state = (events, host, slot);
    let stream = futures_util::stream::unfold(state, |(mut events, host, slot)| async move {
        let line = match events.next().await? {
            Received::Event(record) => Line::Event(record),
            Received::Missed(count) => {
                Line::Said { said: Said::EventsDropped { count }, ts_us: host.clock_us() }
            }
        };
        let data = serde_json::to_string(&line).unwrap_or_default();
        Some((Ok::<_, std::convert::Infallible>(Sse::default().data(data)), (events, host, slot)))
    });
    axum::response::Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

async fn command(State(web): State<Web>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|given| same(given.as_bytes(), web.token.as_bytes())) {
        let error = serde_json::json!({ "event": "reply", "ok": false,
            "error": "admin actions need the token `warden run` printed at start" });
        return (StatusCode::UNAUTHORIZED, error.to_string()).into_response();
    }
    if body.len() > MAX_COMMAND {
        let error = serde_json::json!({ "event": "reply", "ok": false,
            "error": format!("a command of {} bytes; the most is {MAX_COMMAND}", body.len()) });
        return (StatusCode::PAYLOAD_TOO_LARGE, error.to_string()).into_response();
    }
    let reply = control::answer(&web.host, &web.base, &body).await;
    let text = serde_json::to_string(&reply).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// Compares in time that depends on the length only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh admin token: 128 bits from the system's random source, in hex.
pub(crate) fn token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
