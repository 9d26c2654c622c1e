//! The web console on a listener of its own: its page, script and styles
//! (built from `console/` by esbuild, committed, embedded here), and the
//! same `JobService` over gRPC-Web for the page to call, with the same
//! token check, limits and metrics as the gRPC listener. Nothing is loaded
//! from anywhere else: the page's Content-Security-Policy says so.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;
use tower::ServiceExt;
use tower::util::BoxCloneService;

/// `JobService` as the console calls it: gRPC-Web requests in, responses out.
pub type GrpcWeb = BoxCloneService<Request<Incoming>, Response<Body>, Infallible>;

/// One embedded file of the console.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: [Asset; 3] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../console/static/index.html"),
    },
    Asset {
        path: "/console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/dist/console.js"),
    },
    Asset {
        path: "/console.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../console/dist/console.css"),
    },
];

/// Only this server's own files and calls: no inline script, no other origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data: blob:; form-action 'none'; frame-ancestors 'none'; \
     base-uri 'none'";

/// Serves the console on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, grpc_web: GrpcWeb, shutdown: CancellationToken) {
    let local = listener.local_addr().ok();
    let handler = move |mut request: Request<Incoming>, peer| {
        // The caller's address, as the gRPC listener gives it, for the
        // per-caller stream limit when there are no tokens.
        request.extensions_mut().insert(TcpConnectInfo {
            local_addr: local,
            remote_addr: Some(peer),
        });
        respond(request, grpc_web.clone())
    };
    crate::http1::serve("console", listener, handler, shutdown).await;
}

/// A gRPC-Web call goes to the service; a GET to an embedded file.
async fn respond(request: Request<Incoming>, grpc_web: GrpcWeb) -> Response<Body> {
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc-web"));
    if grpc {
        return match grpc_web.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "the console serves GET requests",
        );
    }
    let path = request.uri().path();
    let Some(asset) = ASSETS
        .iter()
        .find(|asset| asset.path == path || (asset.path == "/" && path == "/index.html"))
    else {
        return plain(StatusCode::NOT_FOUND, "not a file of the batchops console");
    };
    let mut response = Response::new(Body::new(Full::new(Bytes::from_static(asset.body))));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The page is small and changes with the binary: always revalidate.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn plain(status: StatusCode, message: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(Bytes::from_static(message.as_bytes()))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_page_loads_only_its_own_files() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(page.contains(r#"src="/console.js""#));
        assert!(page.contains(r#"href="/console.css""#));
        for asset in &ASSETS {
            let text = String::from_utf8_lossy(asset.body);
            assert!(
                !text.contains("https://"),
                "{} loads from elsewhere",
                asset.path
            );
        }
    }
}
