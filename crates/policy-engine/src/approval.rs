//! Human approval: the in-memory registry of approval requests (shared by the gateway's
//! admin API and CLI through [`crate::PolicyState::approvals`]) and the gate that holds a
//! turn until a human decides, or answers at once in non-holding mode.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use exchange::{ApprovalRecord, Decision, ExchangeHandle, Phase, Verdict};
use parking_lot::Mutex;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::pack::CompiledPack;
use crate::state::PolicyState;

/// Most approval requests kept; beyond it the oldest decided ones are dropped first.
pub const MAX_APPROVALS: usize = 10_000;
/// How long a decided (or timed out) request stays visible.
pub const DECIDED_RETENTION: Duration = Duration::from_secs(3600);

/// Where an approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for a human.
    Pending,
    /// A human approved.
    Approved,
    /// A human denied.
    Denied,
    /// Nobody decided in time.
    TimedOut,
    /// The held client went away before a decision.
    Cancelled,
}

impl ApprovalStatus {
    /// The snake_case name (`pending`, `approved`, …), as recorded in the audit chain.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::TimedOut => "timed_out",
            ApprovalStatus::Cancelled => "cancelled",
        }
    }
}

/// One approval request as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalView {
    /// `apr_` + 16 hex digits.
    pub id: String,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// `hold` (the client waits) or `non_holding` (the client retries).
    pub mode: &'static str,
    /// The agent whose turn or tool call needs the approval.
    pub agent: String,
    /// Its role.
    pub role: Option<String>,
    /// Its workflow.
    pub workflow: Option<String>,
    /// The conversation.
    pub conversation: String,
    /// The rule(s) that asked for approval (comma-separated when several).
    pub rule: String,
    /// Why.
    pub reason: String,
    /// Where the subject sits (`choices[0].message.tool_calls[0]`, `tool`).
    pub location: String,
    /// The exact tool call(s) or message(s) to approve.
    pub subject: serde_json::Value,
    /// The audit event id of the exchange that asked.
    pub event_id: String,
    /// Hex SHA-256 of the request body (a non-holding retry must match it).
    pub body_sha256: String,
    /// Seconds the request waits for a decision.
    pub timeout_seconds: u64,
    /// What a timeout decides: `deny` or `allow`.
    pub on_timeout: &'static str,
    /// Unix milliseconds of creation.
    pub created_unix_ms: u64,
    /// Who decided.
    pub approver: Option<String>,
    /// The approver's note.
    pub note: Option<String>,
    /// Unix milliseconds of the decision.
    pub decided_unix_ms: Option<u64>,
    /// Milliseconds between the request and its decision.
    pub waited_ms: Option<u64>,
    /// Non-holding: whether the approved retry has passed (an approval passes once).
    pub consumed: bool,
}

/// Errors of [`ApprovalRegistry::decide`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// No such request (never existed, or expired).
    #[error("approval `{0}` not found")]
    NotFound(String),
    /// It was decided already.
    #[error("approval `{id}` is already {status}")]
    AlreadyDecided {
        /// The request.
        id: String,
        /// Its status.
        status: &'static str,
    },
}

struct Slot {
    view: ApprovalView,
    created: Instant,
    deadline: Instant,
    decided: Option<Instant>,
    tx: watch::Sender<ApprovalStatus>,
}

#[derive(Default)]
struct RegInner {
    slots: HashMap<String, Slot>,
}

/// The approval requests of a gateway. `Clone` shares it.
#[derive(Clone, Default)]
pub struct ApprovalRegistry {
    inner: Arc<Mutex<RegInner>>,
}

impl std::fmt::Debug for ApprovalRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalRegistry")
            .field("requests", &self.inner.lock().slots.len())
            .finish()
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What is needed to open a request.
pub(crate) struct NewApproval {
    pub mode: &'static str,
    pub agent: String,
    pub role: Option<String>,
    pub workflow: Option<String>,
    pub conversation: String,
    pub rule: String,
    pub reason: String,
    pub location: String,
    pub subject: serde_json::Value,
    pub event_id: String,
    pub body_sha256: String,
    pub timeout: Duration,
    pub allow_on_timeout: bool,
}

impl RegInner {
    /// Expires non-holding pending requests past their deadline, forgets old decided ones,
    /// and keeps the registry under its cap.
    fn sweep(&mut self, now: Instant) {
        for slot in self.slots.values_mut() {
            if slot.view.status == ApprovalStatus::Pending
                && slot.view.mode == "non_holding"
                && now >= slot.deadline
            {
                slot.view.status = ApprovalStatus::TimedOut;
                slot.decided = Some(now);
                slot.view.waited_ms = Some(ms(now.duration_since(slot.created)));
                let _ = slot.tx.send(ApprovalStatus::TimedOut);
            }
        }
        self.slots.retain(|_, s| match s.decided {
            Some(d) => now.duration_since(d) < DECIDED_RETENTION,
            None => true,
        });
        while self.slots.len() >= MAX_APPROVALS {
            let oldest = self
                .slots
                .iter()
                .min_by_key(|(_, s)| (s.decided.is_none(), s.created))
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.slots.remove(&k);
                }
                None => break,
            }
        }
    }
}

impl ApprovalRegistry {
    /// An empty registry.
    pub fn new() -> ApprovalRegistry {
        ApprovalRegistry::default()
    }

    pub(crate) fn create(&self, new: NewApproval) -> (String, watch::Receiver<ApprovalStatus>) {
        let now = Instant::now();
        let id = format!("apr_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let (tx, rx) = watch::channel(ApprovalStatus::Pending);
        let view = ApprovalView {
            id: id.clone(),
            status: ApprovalStatus::Pending,
            mode: new.mode,
            agent: new.agent,
            role: new.role,
            workflow: new.workflow,
            conversation: new.conversation,
            rule: new.rule,
            reason: new.reason,
            location: new.location,
            subject: new.subject,
            event_id: new.event_id,
            body_sha256: new.body_sha256,
            timeout_seconds: new.timeout.as_secs(),
            on_timeout: if new.allow_on_timeout {
                "allow"
            } else {
                "deny"
            },
            created_unix_ms: unix_ms(SystemTime::now()),
            approver: None,
            note: None,
            decided_unix_ms: None,
            waited_ms: None,
            consumed: false,
        };
        let mut inner = self.inner.lock();
        inner.sweep(now);
        inner.slots.insert(
            id.clone(),
            Slot {
                view,
                created: now,
                deadline: now + new.timeout,
                decided: None,
                tx,
            },
        );
        (id, rx)
    }

    /// Every request still known, oldest first.
    pub fn list(&self) -> Vec<ApprovalView> {
        let mut inner = self.inner.lock();
        inner.sweep(Instant::now());
        let mut v: Vec<(Instant, ApprovalView)> = inner
            .slots
            .values()
            .map(|s| (s.created, s.view.clone()))
            .collect();
        v.sort_by_key(|(t, _)| *t);
        v.into_iter().map(|(_, v)| v).collect()
    }

    /// One request.
    pub fn get(&self, id: &str) -> Option<ApprovalView> {
        let mut inner = self.inner.lock();
        inner.sweep(Instant::now());
        inner.slots.get(id).map(|s| s.view.clone())
    }

    /// Approves (`approve: true`) or denies a pending request; wakes the held turn.
    pub fn decide(
        &self,
        id: &str,
        approve: bool,
        approver: &str,
        note: Option<String>,
    ) -> Result<ApprovalView, ApprovalError> {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        inner.sweep(now);
        let slot = inner
            .slots
            .get_mut(id)
            .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?;
        if slot.view.status != ApprovalStatus::Pending {
            return Err(ApprovalError::AlreadyDecided {
                id: id.to_owned(),
                status: slot.view.status.as_str(),
            });
        }
        let status = if approve {
            ApprovalStatus::Approved
        } else {
            ApprovalStatus::Denied
        };
        slot.view.status = status;
        slot.view.approver = Some(approver.to_owned());
        slot.view.note = note;
        slot.view.decided_unix_ms = Some(unix_ms(SystemTime::now()));
        slot.view.waited_ms = Some(ms(now.duration_since(slot.created)));
        slot.decided = Some(now);
        let _ = slot.tx.send(status);
        Ok(slot.view.clone())
    }

    /// Sets the final status of a held request that is still pending (timeout, cancel).
    fn finish(&self, id: &str, status: ApprovalStatus) -> Option<ApprovalView> {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        let slot = inner.slots.get_mut(id)?;
        if slot.view.status == ApprovalStatus::Pending {
            slot.view.status = status;
            slot.view.waited_ms = Some(ms(now.duration_since(slot.created)));
            slot.decided = Some(now);
            let _ = slot.tx.send(status);
        }
        Some(slot.view.clone())
    }

    /// Non-holding mode: the newest request for this body and agent that can still say
    /// something (pending, denied, or approved and not yet consumed).
    fn find_for_body(&self, body_sha256: &str, agent: &str) -> Option<ApprovalView> {
        let mut inner = self.inner.lock();
        inner.sweep(Instant::now());
        inner
            .slots
            .values()
            .filter(|s| {
                s.view.body_sha256 == body_sha256
                    && s.view.agent == agent
                    && s.view.mode == "non_holding"
                    && match s.view.status {
                        ApprovalStatus::Pending | ApprovalStatus::Denied => true,
                        ApprovalStatus::Approved => !s.view.consumed,
                        ApprovalStatus::TimedOut | ApprovalStatus::Cancelled => false,
                    }
            })
            .max_by_key(|s| s.created)
            .map(|s| s.view.clone())
    }

    /// Marks an approved non-holding request as used; false when it was used already.
    fn consume(&self, id: &str) -> bool {
        let mut inner = self.inner.lock();
        match inner.slots.get_mut(id) {
            Some(s) if s.view.status == ApprovalStatus::Approved && !s.view.consumed => {
                s.view.consumed = true;
                true
            }
            _ => false,
        }
    }
}

/// One rule match that requires a human approval.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalNeed {
    /// The rule.
    pub rule: String,
    /// Its reason.
    pub reason: String,
    /// Where the subject sits.
    pub location: String,
    /// The exact tool call or message.
    pub subject: serde_json::Value,
    /// How long to wait.
    pub timeout: Duration,
    /// Whether a timeout allows.
    pub allow_on_timeout: bool,
}

/// What the approval gate decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateOutcome {
    /// Approved (or allowed on timeout): go on.
    Proceed,
    /// Denied or timed out (deny): a `human-oversight` BLOCK verdict was added.
    Refused,
    /// Non-holding mode: the request `id` waits for a human; answer at once.
    Pending {
        /// The approval id to name in the answer.
        id: String,
    },
}

fn combine(needs: &[ApprovalNeed]) -> (String, String, String, serde_json::Value, Duration, bool) {
    let mut rules: Vec<&str> = Vec::new();
    let mut reasons: Vec<&str> = Vec::new();
    let mut locations: Vec<&str> = Vec::new();
    for n in needs {
        if !rules.contains(&n.rule.as_str()) {
            rules.push(&n.rule);
            reasons.push(&n.reason);
        }
        if !locations.contains(&n.location.as_str()) {
            locations.push(&n.location);
        }
    }
    let subject = if needs.len() == 1 {
        needs[0].subject.clone()
    } else {
        serde_json::Value::Array(needs.iter().map(|n| n.subject.clone()).collect())
    };
    let timeout = needs
        .iter()
        .map(|n| n.timeout)
        .min()
        .unwrap_or(Duration::from_secs(300));
    let allow = needs.iter().all(|n| n.allow_on_timeout);
    (
        rules.join(","),
        reasons.join("; "),
        locations.join(", "),
        subject,
        timeout,
        allow,
    )
}

/// Cancels a held request when the held future is dropped (client gone).
struct CancelOnDrop<'a> {
    registry: &'a ApprovalRegistry,
    id: String,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.registry.finish(&self.id, ApprovalStatus::Cancelled);
        }
    }
}

fn record(view: &ApprovalView) -> ApprovalRecord {
    ApprovalRecord {
        id: view.id.clone(),
        rule: view.rule.clone(),
        status: view.status.as_str().to_owned(),
        approver: view.approver.clone(),
        waited_ms: view.waited_ms.unwrap_or(0),
    }
}

fn refuse(handle: &ExchangeHandle, phase: Phase, view: &ApprovalView) {
    let reason = match view.status {
        ApprovalStatus::Denied => format!(
            "approval `{}` for rule `{}` denied by {}{}",
            view.id,
            view.rule,
            view.approver.as_deref().unwrap_or("unknown"),
            view.note
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        ),
        ApprovalStatus::TimedOut => format!(
            "approval `{}` for rule `{}` timed out after {}s (on_timeout: deny)",
            view.id, view.rule, view.timeout_seconds
        ),
        _ => format!(
            "approval `{}` for rule `{}` was {}",
            view.id,
            view.rule,
            view.status.as_str()
        ),
    };
    let mut ex = handle.lock();
    ex.approval = Some(record(view));
    ex.verdicts.push(Verdict::new(
        "human-oversight",
        phase,
        Decision::Block,
        reason,
    ));
}

fn granted(handle: &ExchangeHandle, phase: Phase, view: &ApprovalView) {
    let reason = match view.status {
        ApprovalStatus::Approved => format!(
            "approval `{}` granted by {} after {} ms",
            view.id,
            view.approver.as_deref().unwrap_or("unknown"),
            view.waited_ms.unwrap_or(0)
        ),
        _ => format!(
            "approval `{}` timed out after {}s; on_timeout: allow",
            view.id, view.timeout_seconds
        ),
    };
    let mut ex = handle.lock();
    ex.approval = Some(record(view));
    ex.verdicts.push(Verdict::new(
        "human-oversight",
        phase,
        Decision::Allow,
        reason,
    ));
}

/// Asks for a human approval of `needs` (non-empty) for the exchange behind `handle`:
/// holds until decided or timed out (`mode: hold`), or answers at once in non-holding mode,
/// where a retry of the same request body passes once approved. Records the outcome on the
/// exchange (`approval`, and a `human-oversight` verdict). Never holds the exchange lock
/// across the wait.
pub async fn approval_gate(
    pack: &CompiledPack,
    state: &PolicyState,
    handle: &ExchangeHandle,
    phase: Phase,
    needs: Vec<ApprovalNeed>,
) -> GateOutcome {
    let registry = state.approvals();
    let (rule, reason, location, subject, timeout, allow_on_timeout) = combine(&needs);
    let non_holding = pack.oversight().non_holding;
    let new = {
        let ex = handle.lock();
        NewApproval {
            mode: if non_holding { "non_holding" } else { "hold" },
            agent: ex.identity.agent_or_anonymous().to_owned(),
            role: ex.identity.role.clone(),
            workflow: ex.identity.workflow.clone(),
            conversation: ex.conversation_id.clone(),
            rule,
            reason,
            location,
            subject,
            event_id: ex.id.to_string(),
            body_sha256: hex::encode(Sha256::digest(&ex.original_body)),
            timeout,
            allow_on_timeout,
        }
    };
    if non_holding {
        if let Some(view) = registry.find_for_body(&new.body_sha256, &new.agent) {
            match view.status {
                ApprovalStatus::Approved if registry.consume(&view.id) => {
                    granted(handle, phase, &view);
                    return GateOutcome::Proceed;
                }
                ApprovalStatus::Denied => {
                    refuse(handle, phase, &view);
                    return GateOutcome::Refused;
                }
                ApprovalStatus::Pending => {
                    handle.lock().approval = Some(record(&view));
                    return GateOutcome::Pending { id: view.id };
                }
                _ => {}
            }
        }
        let (id, _rx) = registry.create(new);
        if let Some(view) = registry.get(&id) {
            handle.lock().approval = Some(record(&view));
        }
        return GateOutcome::Pending { id };
    }
    let (id, mut rx) = registry.create(new);
    if let Some(view) = registry.get(&id) {
        handle.lock().approval = Some(record(&view));
    }
    let mut guard = CancelOnDrop {
        registry,
        id: id.clone(),
        armed: true,
    };
    let waited =
        tokio::time::timeout(timeout, rx.wait_for(|s| *s != ApprovalStatus::Pending)).await;
    guard.armed = false;
    let view = match waited {
        Ok(Ok(_)) => registry.get(&id),
        Ok(Err(_)) | Err(_) => registry.finish(&id, ApprovalStatus::TimedOut),
    };
    let Some(view) = view else {
        // Evicted while waiting (registry over its cap): fail closed.
        let mut ex = handle.lock();
        ex.verdicts.push(Verdict::new(
            "human-oversight",
            phase,
            Decision::Block,
            format!("approval `{id}` was evicted before a decision"),
        ));
        return GateOutcome::Refused;
    };
    match view.status {
        ApprovalStatus::Approved => {
            granted(handle, phase, &view);
            GateOutcome::Proceed
        }
        ApprovalStatus::TimedOut if allow_on_timeout => {
            granted(handle, phase, &view);
            GateOutcome::Proceed
        }
        _ => {
            refuse(handle, phase, &view);
            GateOutcome::Refused
        }
    }
}

/// The answer to a turn whose approval is pending (non-holding mode): per `on_block`, a 403
/// `policy_violation` with code `approval_required`, or a 200 completion saying so; both
/// name the approval id (also in the `x-palisade-approval` header).
pub fn approval_pending_response(
    pack: &CompiledPack,
    ex: &exchange::Exchange,
    id: &str,
) -> http::Response<exchange::ResponseBody> {
    let rule = ex.approval.as_ref().map(|a| a.rule.as_str()).unwrap_or("");
    let message = format!(
        "approval required: request `{id}` (rule `{rule}`) waits for a human decision; \
         retry the same request once it is approved"
    );
    let mut res = match pack.settings.block_response {
        crate::BlockResponse::Error => {
            exchange::ApiError::policy_violation("approval_required", message).into_response()
        }
        crate::BlockResponse::Completion => {
            crate::pack::completion_response(ex, &format!("[palisade] {message}"))
        }
    };
    if let Ok(v) = http::HeaderValue::from_str(id) {
        res.headers_mut().insert(HEADER_APPROVAL, v);
    }
    res.headers_mut().insert(
        exchange::HEADER_DECISION,
        http::HeaderValue::from_static("CONSTRAIN"),
    );
    res
}

/// Response header naming the approval request of a held or pending turn.
pub const HEADER_APPROVAL: &str = "x-palisade-approval";

type Res = http::Response<exchange::ResponseBody>;

/// The input layer's hold: waits for the approval of `needs`, then forwards `req` to the
/// readied `inner` service, or answers with the block / pending response.
pub(crate) async fn hold_then_call<S>(
    mut inner: S,
    req: http::Request<bytes::Bytes>,
    pack: Arc<CompiledPack>,
    state: PolicyState,
    handle: ExchangeHandle,
    needs: Vec<ApprovalNeed>,
) -> Result<Res, exchange::BoxError>
where
    S: tower::Service<http::Request<bytes::Bytes>, Response = Res, Error = exchange::BoxError>,
{
    match approval_gate(&pack, &state, &handle, Phase::Input, needs).await {
        GateOutcome::Proceed => inner.call(req).await,
        GateOutcome::Refused => {
            let mut ex = handle.lock();
            let (policy, _) = pack.block_message(&ex);
            ex.outcome = exchange::Outcome::Blocked {
                policy,
                status: pack.blocked_status(),
            };
            Ok(pack.blocked_response(&ex))
        }
        GateOutcome::Pending { id } => {
            let mut ex = handle.lock();
            let res = approval_pending_response(&pack, &ex, &id);
            ex.outcome = exchange::Outcome::Blocked {
                policy: "human-oversight".to_owned(),
                status: res.status().as_u16(),
            };
            Ok(res)
        }
    }
}

/// The output layer's hold (non-streamed responses): `None` to release the response,
/// `Some(answer)` when the approval was refused or is pending.
pub(crate) async fn output_gate(
    pack: &CompiledPack,
    state: &PolicyState,
    handle: &ExchangeHandle,
    needs: Vec<ApprovalNeed>,
) -> Option<Res> {
    if needs.is_empty() {
        return None;
    }
    match approval_gate(pack, state, handle, Phase::Output, needs).await {
        GateOutcome::Proceed => None,
        GateOutcome::Refused => {
            let mut ex = handle.lock();
            let (policy, _) = pack.block_message(&ex);
            ex.outcome = exchange::Outcome::Blocked {
                policy,
                status: pack.blocked_status(),
            };
            Some(pack.blocked_response(&ex))
        }
        GateOutcome::Pending { id } => {
            let mut ex = handle.lock();
            let res = approval_pending_response(pack, &ex, &id);
            ex.outcome = exchange::Outcome::Blocked {
                policy: "human-oversight".to_owned(),
                status: res.status().as_u16(),
            };
            Some(res)
        }
    }
}
