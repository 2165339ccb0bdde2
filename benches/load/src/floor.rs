//! The floor: a bare pass-through proxy. hyper server (HTTP/1.1), hyper-util's pooled
//! client, the request and response bodies streamed through untouched. It does nothing
//! else, so what Palisade costs on top of it is the cost of the policy chain.

use std::net::SocketAddr;

use http::Uri;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

type ProxyBody = http_body_util::combinators::BoxBody<bytes::Bytes, hyper::Error>;

/// Serves until the process ends, forwarding everything to `upstream` (`host:port`).
pub async fn serve(listen: SocketAddr, upstream: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "floor-proxy listening on http://{}/v1",
        listener.local_addr()?
    );
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    let authority = upstream.to_string();
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let authority = authority.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                forward(client.clone(), authority.clone(), req)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn forward(
    client: Client<HttpConnector, Incoming>,
    authority: String,
    req: http::Request<Incoming>,
) -> Result<http::Response<ProxyBody>, hyper::Error> {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = match Uri::builder()
        .scheme("http")
        .authority(authority.as_str())
        .path_and_query(path)
        .build()
    {
        Ok(u) => u,
        Err(_) => return Ok(status(http::StatusCode::BAD_REQUEST)),
    };
    match client.request(http::Request::from_parts(parts, body)).await {
        Ok(res) => Ok(res.map(BodyExt::boxed)),
        Err(_) => Ok(status(http::StatusCode::BAD_GATEWAY)),
    }
}

fn status(code: http::StatusCode) -> http::Response<ProxyBody> {
    let mut res = http::Response::new(
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed(),
    );
    *res.status_mut() = code;
    res
}
