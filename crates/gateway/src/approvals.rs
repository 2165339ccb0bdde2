//! The approvals admin API over the gateway's approval registry (held turns and tool
//! calls waiting for a human). Every route needs the admin token (checked by the server):
//!
//! * `GET /admin/approvals[?status=pending]` → `{"approvals": [ApprovalView…]}` (oldest first)
//! * `GET /admin/approvals/{id}` → the request
//! * `POST /admin/approvals/{id}/approve` and `…/deny`, optional body
//!   `{"approver": "alice", "note": "…"}` → the decided request; `404` unknown id, `409`
//!   already decided.

use bytes::Bytes;
use exchange::{ApiError, ResponseBody, json_response};
use http::{Method, StatusCode};
use policy_engine::{ApprovalError, ApprovalRegistry, ApprovalStatus};
use serde::Deserialize;

/// Body of an approve / deny call.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    #[serde(default)]
    approver: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// Whether `path` belongs to the approvals API.
pub(crate) fn is_approvals_path(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    p == "/admin/approvals" || p.starts_with("/admin/approvals/")
}

fn status_filter(query: Option<&str>) -> Result<Option<ApprovalStatus>, ApiError> {
    let Some(q) = query else { return Ok(None) };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "status" {
            continue;
        }
        let s = match v {
            "pending" => ApprovalStatus::Pending,
            "approved" => ApprovalStatus::Approved,
            "denied" => ApprovalStatus::Denied,
            "timed_out" => ApprovalStatus::TimedOut,
            "cancelled" => ApprovalStatus::Cancelled,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown approval status `{other}` (expected one of: pending, approved, denied, timed_out, cancelled)"
                ))
                .with_param("status"));
            }
        };
        return Ok(Some(s));
    }
    Ok(None)
}

/// Answers an approvals request (the admin token was already checked).
pub(crate) fn handle(
    registry: &ApprovalRegistry,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &Bytes,
) -> http::Response<ResponseBody> {
    let p = path.trim_end_matches('/');
    let rest = p.strip_prefix("/admin/approvals").unwrap_or("");
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let not_allowed = || {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            format!("method {method} is not allowed on {path}"),
        )
        .into_response()
    };
    match segs.as_slice() {
        [] => {
            if *method != Method::GET {
                return not_allowed();
            }
            let filter = match status_filter(query) {
                Ok(f) => f,
                Err(e) => return e.into_response(),
            };
            let list: Vec<_> = registry
                .list()
                .into_iter()
                .filter(|v| filter.is_none_or(|f| v.status == f))
                .collect();
            json_response(StatusCode::OK, &serde_json::json!({ "approvals": list }))
        }
        [id] => {
            if *method != Method::GET {
                return not_allowed();
            }
            match registry.get(id) {
                Some(v) => json_response(StatusCode::OK, &v),
                None => ApiError::not_found(format!("approval `{id}` not found"))
                    .with_code("approval_not_found")
                    .into_response(),
            }
        }
        [id, action @ ("approve" | "deny")] => {
            if *method != Method::POST {
                return not_allowed();
            }
            let parsed: DecideBody = if body.iter().all(u8::is_ascii_whitespace) {
                DecideBody::default()
            } else {
                match serde_json::from_slice(body) {
                    Ok(b) => b,
                    Err(e) => {
                        return ApiError::bad_request(format!(
                            "invalid approval decision body: {e}"
                        ))
                        .into_response();
                    }
                }
            };
            let approver = parsed
                .approver
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| "admin".to_owned());
            if approver.len() > 128 {
                return ApiError::bad_request("approver name is longer than 128 characters")
                    .with_param("approver")
                    .into_response();
            }
            let note = parsed
                .note
                .map(|n| n.chars().take(1000).collect::<String>());
            match registry.decide(id, *action == "approve", &approver, note) {
                Ok(v) => {
                    tracing::info!(
                        approval = %v.id,
                        decision = v.status.as_str(),
                        approver = %approver,
                        rule = %v.rule,
                        agent = %v.agent,
                        "approval decided"
                    );
                    json_response(StatusCode::OK, &v)
                }
                Err(e @ ApprovalError::NotFound(_)) => ApiError::not_found(e.to_string())
                    .with_code("approval_not_found")
                    .into_response(),
                Err(e @ ApprovalError::AlreadyDecided { .. }) => {
                    ApiError::new(StatusCode::CONFLICT, "invalid_request_error", e.to_string())
                        .with_code("approval_already_decided")
                        .into_response()
                }
            }
        }
        _ => ApiError::not_found(format!("unknown URL: {method} {path}"))
            .with_code("unknown_url")
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(res: http::Response<ResponseBody>) -> (u16, serde_json::Value) {
        let status = res.status().as_u16();
        let b = res.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&b).unwrap_or_default())
    }

    #[tokio::test]
    async fn unknown_ids_and_bad_methods_are_refused() {
        let r = ApprovalRegistry::new();
        let (s, v) = body(handle(
            &r,
            &Method::GET,
            "/admin/approvals",
            None,
            &Bytes::new(),
        ))
        .await;
        assert_eq!((s, v["approvals"].clone()), (200, serde_json::json!([])));
        let (s, v) = body(handle(
            &r,
            &Method::POST,
            "/admin/approvals/apr_x/approve",
            None,
            &Bytes::new(),
        ))
        .await;
        assert_eq!(s, 404);
        assert_eq!(v["error"]["message"], "approval `apr_x` not found");
        let (s, _) = body(handle(
            &r,
            &Method::DELETE,
            "/admin/approvals",
            None,
            &Bytes::new(),
        ))
        .await;
        assert_eq!(s, 405);
        let (s, v) = body(handle(
            &r,
            &Method::GET,
            "/admin/approvals",
            Some("status=maybe"),
            &Bytes::new(),
        ))
        .await;
        assert_eq!(s, 400);
        assert_eq!(v["error"]["param"], "status");
        assert!(is_approvals_path("/admin/approvals/"));
        assert!(!is_approvals_path("/admin/approvalsx"));
    }
}
