use serde::{Deserialize, Serialize};

/// Who is calling: resolved from the virtual key (authoritative) and header claims.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The agent name bound to the key (or the claim when unauthenticated).
    pub agent: Option<String>,
    /// The role bound to the key.
    pub role: Option<String>,
    /// The workflow bound to the key or claimed by header.
    pub workflow: Option<String>,
    /// Public id of the virtual key used (never the key itself).
    pub key_id: Option<String>,
    /// Whether a valid gateway key authenticated this call.
    pub authenticated: bool,
    /// `X-Palisade-Agent` header claim, if any.
    pub claimed_agent: Option<String>,
    /// `X-Palisade-Workflow` header claim, if any.
    pub claimed_workflow: Option<String>,
}

impl Identity {
    /// The agent name to attribute to: key-bound agent, else claim, else `anonymous`.
    pub fn agent_or_anonymous(&self) -> &str {
        self.agent
            .as_deref()
            .or(self.claimed_agent.as_deref())
            .unwrap_or("anonymous")
    }

    /// True when a header claim contradicts what the key says (impersonation).
    pub fn claim_contradicts_key(&self) -> bool {
        let agent = matches!((&self.agent, &self.claimed_agent), (Some(a), Some(c)) if self.authenticated && a != c);
        let wf = matches!((&self.workflow, &self.claimed_workflow), (Some(a), Some(c)) if self.authenticated && a != c);
        agent || wf
    }
}
