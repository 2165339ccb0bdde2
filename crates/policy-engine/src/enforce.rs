//! Tool-execution decisions (`POST /v1/enforce`): a tool asks before it runs, and the call
//! is evaluated by the same detectors, firewall, rules and taint tracking as a tool call in
//! a model response.

use std::borrow::Cow;

use detectors::{DetectorMask, ScanContext, Surface};
use exchange::{Decision, Exchange, Phase, Verdict};
use serde::Deserialize;

use crate::approval::ApprovalNeed;
use crate::eval::{check_taint, conversation_key, tool_limit_check};
use crate::pack::CompiledPack;
use crate::policies::CompiledPolicy;
use crate::rules::{ActionType, Detail, Subject};
use crate::state::PolicyState;

/// The body of `POST /v1/enforce`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCallRequest {
    /// The tool about to run.
    pub tool: String,
    /// Its arguments: a JSON object (or a JSON-encoded string of one).
    #[serde(default)]
    pub arguments: serde_json::Value,
    /// The id of the model's tool call this execution answers, if known (a call the
    /// gateway already counted in a response is not counted again).
    #[serde(default)]
    pub call_id: Option<String>,
    /// The conversation, when the caller knows it (else the `X-Palisade-Conversation`
    /// header, else the agent's latest conversation).
    #[serde(default)]
    pub conversation_id: Option<String>,
}

impl ToolCallRequest {
    /// The arguments as a JSON value (a string holding JSON is decoded).
    pub fn arguments_value(&self) -> serde_json::Value {
        match &self.arguments {
            serde_json::Value::String(s) => {
                serde_json::from_str(s).unwrap_or_else(|_| self.arguments.clone())
            }
            serde_json::Value::Null => serde_json::Value::Object(Default::default()),
            v => v.clone(),
        }
    }
}

impl CompiledPack {
    /// Evaluates a tool call that is about to run, for the caller identified on `ex` (its
    /// conversation id set): detector policies on the arguments, the agent firewall (tool
    /// allowed, call limits, code guard, header impersonation), rules (`action_type:
    /// tool_call`, taint) and `default_decision`. Pushes `Phase::Input` verdicts on `ex`;
    /// returns the approvals that matching `CONSTRAIN` rules require.
    pub fn evaluate_tool_call(
        &self,
        ex: &mut Exchange,
        call: &ToolCallRequest,
        state: &PolicyState,
    ) -> Vec<ApprovalNeed> {
        let conv = conversation_key(ex);
        if ex.conversation_id.is_empty() {
            ex.conversation_id = conv.clone();
        }
        let args = call.arguments_value();
        let args_text = args.to_string();
        let mut mask = self.input_mask() | self.output_mask();
        if self.uses_taint() {
            mask = DetectorMask::ALL;
        }
        let findings = if mask == DetectorMask::NONE {
            Vec::new()
        } else {
            self.scanner().scan(
                &args_text,
                &ScanContext {
                    surface: Surface::ToolArguments,
                    detectors: mask,
                },
            )
        };
        let agent = ex.identity.agent.clone();
        let who = agent.as_deref().unwrap_or("anonymous");
        let role = ex.identity.role.clone();
        let mut verdicts = Vec::new();
        let mut needs = Vec::new();
        let mut captures = Vec::new();
        let location = "tool".to_owned();
        let scanned = crate::eval::scanned_text(&args_text, findings.clone(), "arguments");
        let texts = std::slice::from_ref(&scanned);
        for (name, pol) in self.chain().iter().zip(self.policies()) {
            match pol {
                CompiledPolicy::Detector(d) => {
                    let mut edits = Vec::new();
                    verdicts.push(crate::eval::detector_verdict(
                        name,
                        d,
                        Phase::Input,
                        texts,
                        &mut edits,
                    ));
                }
                CompiledPolicy::Firewall(fw) => {
                    if !crate::eval::tool_allowed(fw, agent.as_deref(), role.as_deref(), &call.tool)
                    {
                        verdicts.push(Verdict::new(
                            name,
                            Phase::Input,
                            Decision::Block,
                            format!("tool `{}` is not allowed for agent `{who}`", call.tool),
                        ));
                    } else {
                        verdicts.push(Verdict::new(
                            name,
                            Phase::Input,
                            Decision::Allow,
                            format!("tool `{}` is allowed for agent `{who}`", call.tool),
                        ));
                    }
                    let emitted = call.call_id.as_deref().is_some_and(|id| {
                        state.with_entry(&conv, |e| e.emitted_calls.contains(id))
                    });
                    if !emitted {
                        let key = ex.id.to_string();
                        let exceeded = tool_limit_check(
                            fw,
                            state,
                            &conv,
                            who,
                            &call.tool,
                            Some(&key),
                            std::time::Instant::now(),
                        );
                        if !exceeded.is_empty() {
                            verdicts.push(Verdict::new(
                                name,
                                Phase::Input,
                                Decision::Block,
                                format!("tool call limit exceeded: {}", exceeded.join("; ")),
                            ));
                        }
                    }
                    if fw.code_guard {
                        let resp = crate::eval::single_call_response(&call.tool, &args_text);
                        if let Some(mut v) = self.code_guard(name, Phase::Input, &resp) {
                            for f in &mut v.findings {
                                f.location = f.location.replace(
                                    "choices[0].message.tool_calls[0].function.arguments",
                                    "arguments",
                                );
                            }
                            v.reason = v.reason.replace(
                                "choices[0].message.tool_calls[0].function.arguments",
                                "arguments",
                            );
                            verdicts.push(v);
                        }
                    }
                    let imp = crate::firewall::impersonation(ex, None);
                    if !imp.is_empty() {
                        let reasons: Vec<&str> = imp.iter().map(|(_, r)| r.as_str()).collect();
                        let mut v = Verdict::new(
                            name,
                            Phase::Input,
                            if fw.log_impersonation {
                                Decision::Log
                            } else {
                                Decision::Block
                            },
                            format!("impersonation: {}", reasons.join("; ")),
                        );
                        v.findings = imp.into_iter().map(|(f, _)| f).collect();
                        verdicts.push(v);
                    }
                }
                _ => {}
            }
        }
        let taint = if self.uses_taint() {
            check_taint(
                self.scanner(),
                state,
                &conv,
                &args_text,
                &findings,
                &args,
                None,
                // The tool has not run yet: no source can be its own result.
                |_| false,
            )
        } else {
            Vec::new()
        };
        let counted = self.counted(&scanned, Phase::Input);
        let subjects = [Subject {
            action: Some(ActionType::ToolCall),
            agent: agent.as_deref(),
            role: role.as_deref(),
            workflow: ex.identity.workflow.as_deref(),
            model: &ex.request.model,
            tool_name: Some(&call.tool),
            tool_category: self.tool_category(&call.tool),
            arguments: Some(&args),
            sender: agent.as_deref(),
            recipient: None,
            texts: vec![Cow::Borrowed(args_text.as_str())],
            findings: counted,
            location,
            taint,
            detail: Detail::Call {
                name: &call.tool,
                args: &args,
                id: call.call_id.as_deref().unwrap_or(""),
            },
        }];
        let allowed = self.rule_verdicts(
            Phase::Input,
            &subjects,
            &mut verdicts,
            &mut captures,
            &mut needs,
        );
        self.default_decision_verdicts(Phase::Input, &subjects, &allowed, &mut verdicts);
        for (k, field) in captures {
            if field == "tool_calls" {
                ex.metadata.insert(k, call.tool.clone());
            }
        }
        ex.verdicts.extend(verdicts);
        needs
    }
}
