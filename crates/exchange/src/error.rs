use http::StatusCode;
use serde::Serialize;

use crate::ResponseBody;

/// An OpenAI-style error answer: `{"error":{"message","type","param","code"}}` with a status.
///
/// Decisions (block, budget exceeded, …) and client mistakes are answered with this type;
/// it is a response, not a failure of the gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {kind}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The OpenAI `type` field, e.g. `invalid_request_error`, `policy_violation`.
    pub kind: String,
    /// The OpenAI `code` field, e.g. the policy name or `invalid_api_key`.
    pub code: Option<String>,
    /// The offending request field, if any (`messages`, `model`, …).
    pub param: Option<String>,
    /// One-line, human-readable message.
    pub message: String,
    /// Extra response headers (e.g. `retry-after`).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

#[derive(Serialize)]
struct Wire<'a> {
    error: WireInner<'a>,
}

#[derive(Serialize)]
struct WireInner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    /// A new error answer.
    pub fn new(status: StatusCode, kind: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind: kind.into(),
            code: None,
            param: None,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Sets the `code` field.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets the `param` field.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: http::HeaderName, value: http::HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// 400 `invalid_request_error`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 401 `authentication_error` with code `invalid_api_key`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
            .with_code("invalid_api_key")
    }

    /// 404 `not_found_error`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message)
    }

    /// 403 `policy_violation` with the policy as `code`.
    pub fn policy_violation(policy: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "policy_violation", message).with_code(policy)
    }

    /// 500 `internal_error`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    /// 502 `upstream_error`.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "upstream_error", message)
    }

    /// 503 `service_unavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            message,
        )
    }

    /// 504 `upstream_timeout`.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", message)
    }

    /// The JSON body bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        let wire = Wire {
            error: WireInner {
                message: &self.message,
                kind: &self.kind,
                param: self.param.as_deref(),
                code: self.code.as_deref(),
            },
        };
        serde_json::to_vec(&wire).unwrap_or_else(|_| b"{\"error\":{\"message\":\"internal error\",\"type\":\"internal_error\",\"param\":null,\"code\":null}}".to_vec())
    }

    /// The HTTP response.
    pub fn into_response(self) -> http::Response<ResponseBody> {
        let mut res = http::Response::new(crate::full_body(self.body_bytes()));
        *res.status_mut() = self.status;
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        for (k, v) in self.headers {
            res.headers_mut().insert(k, v);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_violation_body_has_openai_shape() {
        let e = ApiError::policy_violation("prompt-injection", "blocked: instruction override");
        let v: serde_json::Value = serde_json::from_slice(&e.body_bytes()).unwrap_or_default();
        assert_eq!(v["error"]["type"], "policy_violation");
        assert_eq!(v["error"]["code"], "prompt-injection");
        assert_eq!(v["error"]["message"], "blocked: instruction override");
        assert_eq!(e.status, StatusCode::FORBIDDEN);
    }
}
