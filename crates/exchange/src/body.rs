use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

/// The boxed error type used by every Palisade service (tower convention).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The response body of every Palisade service: buffered JSON or a streamed SSE body.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// A response body holding `bytes`.
pub fn full_body(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty response body.
pub fn empty_body() -> ResponseBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A JSON response with `status`. Serialization of our own types cannot fail in practice;
/// if it ever does, the body is an OpenAI-style 500 error instead of a panic.
pub fn json_response<T: serde::Serialize>(
    status: http::StatusCode,
    value: &T,
) -> http::Response<ResponseBody> {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut res = http::Response::new(full_body(bytes));
            *res.status_mut() = status;
            res.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            res
        }
        Err(e) => {
            crate::ApiError::internal(format!("response serialization failed: {e}")).into_response()
        }
    }
}
