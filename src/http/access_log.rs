//! The access log: one line per request, and a `request` span naming the request id around
//! everything the request logs (README, "Logs"); the same id goes back on the response as
//! `x-request-id`: the gateway's, or a fresh UUID.
//!
//! tower-http's `TraceLayer` did this with the method and path as span fields and the status
//! and latency as event fields, each formatted on its own by `tracing`'s text format. Here
//! the span holds the id alone, and the line is put together once, as text, and handed to
//! `tracing` as the event's message: `RUST_LOG` and the log writer still decide where it
//! goes, and `log_format` copies it rather than formatting it again. Together with that copy,
//! this made `/healthz` about 7% faster and the webhook 3% (BENCHMARKS.md).
//!
//! tower-http's `SetRequestId` and `PropagateRequestId` did the id's part as two more layers.
//! Besides the header, each stored the id in the request's or the response's extensions,
//! which nothing here reads: two boxed map inserts a request. Here the id is read or made
//! once, and goes straight to the span and the response.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue, Method, Request, Response, Uri};
use tower::{Layer, Service};
use tracing::Span;
use uuid::Uuid;

/// The target of the lines and of the span, for `RUST_LOG`.
pub(crate) const TARGET: &str = module_path!();

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone, Copy, Default)]
pub struct AccessLogLayer;

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog { inner }
    }
}

#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Logged<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let started = Instant::now();
        let id = match request.headers().get(REQUEST_ID) {
            Some(id) => id.clone(),
            None => fresh_id(),
        };
        // An id that is not visible ASCII still goes back on the response, but not to the log.
        let span = tracing::info_span!("request", id = id.to_str().unwrap_or(""));
        // Both are shared buffers: keeping them costs a count, not a copy.
        let method = request.method().clone();
        let uri = request.uri().clone();
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Logged {
            inner,
            span,
            id: Some(id),
            method,
            uri,
            started,
        }
    }
}

/// A v4 UUID, as tower-http's `MakeRequestUuid` made it, without formatting through `fmt`.
fn fresh_id() -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = Uuid::new_v4().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).expect("BUG: a UUID is a valid header value")
}

pin_project_lite::pin_project! {
    /// The handler's future inside the request's span; writes the line and sets the id on
    /// the response when it answers.
    pub struct Logged<F> {
        #[pin]
        inner: F,
        span: Span,
        id: Option<HeaderValue>,
        method: Method,
        uri: Uri,
        started: Instant,
    }
}

impl<F, ResBody, E> Future for Logged<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = {
            let _entered = this.span.enter();
            std::task::ready!(this.inner.poll(cx))
        };
        if let (Ok(response), Some(id)) = (&mut result, this.id.take()) {
            response.headers_mut().entry(REQUEST_ID).or_insert(id);
        }
        if let Ok(response) = &result {
            if tracing::enabled!(target: TARGET, tracing::Level::INFO) {
                let _entered = this.span.enter();
                let line = line(
                    this.method,
                    this.uri,
                    response.status().as_u16(),
                    this.started.elapsed(),
                );
                // A string field rather than a format string: copied, not formatted.
                tracing::info!(target: TARGET, message = line.as_str());
            }
        }
        Poll::Ready(result)
    }
}

/// `served method=POST path=/graphql status=200 latency_ms=0.412`: the path without the
/// query string, which may hold variables; the latency to the microsecond.
pub(crate) fn line(method: &Method, uri: &Uri, status: u16, latency: Duration) -> String {
    let micros = latency.as_micros();
    let mut digits = itoa::Buffer::new();
    let mut line = String::with_capacity(96);
    line.push_str("served method=");
    line.push_str(method.as_str());
    line.push_str(" path=");
    push_path(&mut line, uri.path());
    line.push_str(" status=");
    line.push_str(digits.format(status));
    line.push_str(" latency_ms=");
    line.push_str(digits.format(micros / 1000));
    line.push('.');
    let fraction = digits.format(micros % 1000 + 1000);
    line.push_str(&fraction[1..]);
    line
}

/// The path as the default format's escaping writes it. The URI parser admits no ASCII
/// control character, but it does admit UTF-8, and with it the C1 controls (U+0080 to
/// U+009F), which some terminals take as the start of an escape sequence.
fn push_path(line: &mut String, path: &str) {
    if path.is_ascii() {
        line.push_str(path);
        return;
    }
    for ch in path.chars() {
        match ch {
            '\u{80}'..='\u{9f}' => {
                let _ = write!(line, "\\u{{{:x}}}", ch as u32);
            }
            ch => line.push(ch),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;
    use crate::log_writer::captured::Captured;

    #[test]
    fn the_line_names_method_path_status_and_latency_but_not_the_query() {
        let uri: Uri = "/graphql?query=%7Bme%7D&variables=secret".parse().unwrap();
        let text = line(&Method::POST, &uri, 200, Duration::from_micros(1_412));
        assert_eq!(text, "served method=POST path=/graphql status=200 latency_ms=1.412");
        let text = line(
            &Method::GET,
            &"/healthz".parse().unwrap(),
            503,
            Duration::from_micros(7),
        );
        assert_eq!(text, "served method=GET path=/healthz status=503 latency_ms=0.007");
        let slow = line(&Method::GET, &"/".parse().unwrap(), 200, Duration::from_secs(12));
        assert!(slow.ends_with(" latency_ms=12000.000"), "{slow}");
    }

    #[test]
    fn a_control_character_in_the_path_is_written_escaped() {
        // U+009B is a terminal's control sequence introducer in its 8-bit form.
        let uri: Uri = "/caf%C3%A9/\u{e9}/\u{9b}31m".parse().unwrap();
        let text = line(&Method::GET, &uri, 404, Duration::ZERO);
        assert_eq!(
            text,
            "served method=GET path=/caf%C3%A9/\u{e9}/\\u{9b}31m status=404 latency_ms=0.000"
        );
    }

    /// This thread's lines, in the default format, until the guard drops.
    fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
        let lines = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(lines.clone())
            .finish();
        (lines, tracing::subscriber::set_default(subscriber))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn every_line_of_a_request_names_its_id_and_the_last_one_is_the_access_line() {
        let (lines, _default) = capture();
        let app = Router::new()
            .route(
                "/work",
                get(|| async {
                    tracing::warn!("inside the handler");
                    "done"
                }),
            )
            .layer(AccessLogLayer);
        let request = Request::get("/work?token=hidden")
            .header("x-request-id", "edge-42")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-request-id"], "edge-42");

        let text = lines.text();
        let written: Vec<&str> = text.lines().collect();
        assert_eq!(written.len(), 2, "{text}");
        assert!(written[0].contains("request{id=\"edge-42\"}") && written[0].contains("inside the handler"));
        assert!(written[1].contains("request{id=\"edge-42\"}"), "{}", written[1]);
        assert!(
            written[1].contains("served method=GET path=/work status=200 latency_ms="),
            "{}",
            written[1]
        );
        assert!(
            !text.contains("hidden"),
            "the query string stays out of the log: {text}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_without_an_id_gets_a_fresh_uuid_in_its_lines_and_on_its_response() {
        let (lines, _default) = capture();
        let app = Router::new()
            .route("/work", get(|| async { "done" }))
            .layer(AccessLogLayer);
        let mut ids = Vec::new();
        for _ in 0..2 {
            let request = Request::get("/work").body(Body::empty()).unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
            assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 4, "{id}");
            ids.push(id);
        }
        assert_ne!(ids[0], ids[1]);
        let text = lines.text();
        for id in &ids {
            assert!(text.contains(&format!("request{{id=\"{id}\"}}")), "{text}");
        }
    }
}
