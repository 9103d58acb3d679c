//! The machine's HTTP ceiling for `bench/run`: a bare axum route answering a fixed JSON body,
//! on the same runtime and cores as gatehouse, so gatehouse's figures read as a share of it.
//! Prints `listening on <addr>` once bound; `BIND` picks the address (port 0 by default).

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// About the size of gatehouse's answer to `{ me { id username roles } }`.
const BODY: &str =
    r#"{"data":{"me":{"id":"00000000-0000-4000-8000-000000000000","username":"bench","roles":["user"]}}}"#;

async fn answer() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], BODY)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("listening on {}", listener.local_addr()?);
    // GET and POST both answer, so the same wrk scripts can be pointed at it.
    let app = Router::new().route("/{*path}", get(answer).post(answer));
    axum::serve(listener, app).await
}
