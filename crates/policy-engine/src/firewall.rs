//! The agent firewall's checks beyond tool allow-lists: flooding, the code-execution guard
//! (which text is code), impersonation, and per-tool call limits.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use exchange::{Exchange, FindingRecord, Role};

use crate::policies::FirewallPolicy;

/// Shortest normalized message (in characters) that counts for flooding: short replies
/// such as `ok` or `TERMINATE` repeat legitimately.
pub(crate) const FLOOD_MIN_CHARS: usize = 16;

/// The near-same fingerprint of a message: lower-cased, digit runs folded to `0`, only
/// letters, digits and single spaces kept. `None` when too short to count.
pub(crate) fn near_fingerprint(text: &str) -> Option<u64> {
    let mut norm = String::with_capacity(text.len());
    let mut last_space = true;
    let mut last_digit = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !last_digit {
                norm.push('0');
            }
            last_digit = true;
            last_space = false;
        } else if c.is_alphanumeric() {
            norm.extend(c.to_lowercase());
            last_digit = false;
            last_space = false;
        } else if !last_space {
            norm.push(' ');
            last_space = true;
            last_digit = false;
        }
    }
    let norm = norm.trim_end();
    if norm.chars().count() < FLOOD_MIN_CHARS {
        return None;
    }
    let mut h = DefaultHasher::new();
    norm.hash(&mut h);
    Some(h.finish())
}

/// Flooding: the indexes of the most repeated near-same message of the request's
/// conversation, when it occurs `repeats` times or more.
pub(crate) fn flooding(ex: &Exchange, repeats: u64) -> Option<Vec<usize>> {
    let mut groups: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, m) in ex.request.messages.iter().enumerate() {
        if !matches!(m.role, Role::User | Role::Assistant) {
            continue;
        }
        if let Some(fp) = near_fingerprint(&m.text()) {
            groups.entry(fp).or_default().push(i);
        }
    }
    groups
        .into_values()
        .filter(|v| v.len() as u64 >= repeats)
        .max_by_key(|v| (v.len(), std::cmp::Reverse(v[0])))
}

/// Byte spans of the code in assistant content: fenced blocks (```…```, the info string
/// excluded) and inline `code` spans outside them.
pub(crate) fn code_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut fenced: Vec<(usize, usize)> = Vec::new();
    let mut at = 0;
    while let Some(open) = text[at..].find("```").map(|i| i + at) {
        let body_start = match text[open + 3..].find('\n') {
            Some(nl) => open + 3 + nl + 1,
            None => break,
        };
        let close = text[body_start..]
            .find("```")
            .map(|i| i + body_start)
            .unwrap_or(text.len());
        if close > body_start {
            out.push((body_start, close));
        }
        fenced.push((open, (close + 3).min(text.len())));
        at = (close + 3).min(text.len());
        if at >= text.len() {
            break;
        }
    }
    // Inline spans outside fences.
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        if let Some(&(_, end)) = fenced.iter().find(|(s, e)| i >= *s && i < *e) {
            i = end;
            continue;
        }
        if bytes[i] == b'`' {
            if let Some(len) = text[i + 1..].find(['`', '\n']) {
                let close = i + 1 + len;
                if bytes.get(close) == Some(&b'`') && len > 0 {
                    out.push((i + 1, close));
                    i = close + 1;
                    continue;
                }
            }
        }
        i += 1;
    }
    out.sort_unstable();
    out
}

/// Argument names that hold code or shell commands.
const CODE_ARGUMENTS: [&str; 14] = [
    "code", "command", "commands", "cmd", "script", "shell", "bash", "sh", "python", "source",
    "program", "exec", "snippet", "query",
];

/// Tool categories whose every string argument is code.
pub(crate) const CODE_CATEGORIES: [&str; 3] = ["code_execution", "shell", "code"];

/// The code in a tool call's arguments: (dotted path, text) of every string under an
/// argument named like code (`code`, `command`, `script`, …), or of every string when the
/// tool's category is a code category.
pub(crate) fn code_arguments(args: &serde_json::Value, all: bool) -> Vec<(String, String)> {
    fn walk(v: &serde_json::Value, path: &str, code: bool, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::String(s) if code => out.push((path.to_owned(), s.clone())),
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{path}.{i}"), code, out);
                }
            }
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    let is_code = code || CODE_ARGUMENTS.contains(&k.to_ascii_lowercase().as_str());
                    walk(x, &p, is_code, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(args, "", all, &mut out);
    out
}

fn finding(rule: &str, location: String) -> FindingRecord {
    FindingRecord {
        detector: "identity".to_owned(),
        kind: "impersonation".to_owned(),
        rule: rule.to_owned(),
        location,
        start: 0,
        end: 0,
        score: 1.0,
    }
}

/// Impersonation findings: a header claim contradicting the key, a caller that is not a
/// member of its declared workflow, a message `name` claiming an agent that is not a member.
/// `user` (the task / human) is always a member. With the reason of each.
pub(crate) fn impersonation(
    ex: &Exchange,
    members: Option<&[String]>,
) -> Vec<(FindingRecord, String)> {
    let mut out = Vec::new();
    let id = &ex.identity;
    if id.claim_contradicts_key() {
        if let (Some(a), Some(c)) = (&id.agent, &id.claimed_agent) {
            if a != c {
                out.push((
                    finding(
                        "identity.claim_contradicts_key",
                        "headers.x-palisade-agent".to_owned(),
                    ),
                    format!("header claims agent `{c}` but the key belongs to `{a}`"),
                ));
            }
        }
        if let (Some(w), Some(c)) = (&id.workflow, &id.claimed_workflow) {
            if w != c {
                out.push((
                    finding(
                        "identity.claim_contradicts_key",
                        "headers.x-palisade-workflow".to_owned(),
                    ),
                    format!("header claims workflow `{c}` but the key belongs to `{w}`"),
                ));
            }
        }
    }
    let (Some(members), Some(workflow)) = (members, id.workflow.as_deref()) else {
        return out;
    };
    let member = |n: &str| n == "user" || members.iter().any(|m| m == n);
    if let Some(a) = id.agent.as_deref() {
        if !member(a) {
            out.push((
                finding("identity.caller_not_member", "identity.agent".to_owned()),
                format!("caller `{a}` is not a member of workflow `{workflow}`"),
            ));
        }
    }
    let mut named: Vec<&str> = Vec::new();
    for (i, m) in ex.request.messages.iter().enumerate() {
        if !matches!(m.role, Role::User | Role::Assistant) {
            continue;
        }
        let Some(n) = m.name.as_deref() else { continue };
        if member(n) || named.contains(&n) {
            continue;
        }
        named.push(n);
        out.push((
            finding("identity.name_not_member", format!("messages[{i}].name")),
            format!("messages[{i}] claims agent `{n}`, not a member of workflow `{workflow}`"),
        ));
    }
    out
}

/// The limits of `fw` that apply to `tool`.
pub(crate) fn limits_for<'f>(
    fw: &'f FirewallPolicy,
    tool: &str,
) -> impl Iterator<Item = &'f crate::policies::ToolLimit> {
    fw.tool_limits.iter().filter(move |l| l.tool.matches(tool))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_same_messages_share_a_fingerprint() {
        let a = near_fingerprint("Send the report to finance NOW!!! (attempt 1)");
        let b = near_fingerprint("send the report to finance now (attempt 22)");
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(
            a,
            near_fingerprint("send the report to legal now (attempt 2)")
        );
        assert_eq!(near_fingerprint("ok"), None);
    }

    #[test]
    fn code_spans_find_fences_and_inline_code() {
        let t = "Run this:\n```bash\nrm -rf /tmp/x\n```\nthen `ls -la` and done";
        let got: Vec<&str> = code_spans(t).into_iter().map(|(s, e)| &t[s..e]).collect();
        assert_eq!(got, ["rm -rf /tmp/x\n", "ls -la"]);
        let unclosed = "```sh\ncurl x | sh";
        let got: Vec<&str> = code_spans(unclosed)
            .into_iter()
            .map(|(s, e)| &unclosed[s..e])
            .collect();
        assert_eq!(got, ["curl x | sh"]);
    }

    #[test]
    fn code_arguments_by_name_or_category() {
        let args = serde_json::json!({"command": "ls", "opts": {"script": "echo"}, "note": "hi"});
        assert_eq!(
            code_arguments(&args, false),
            [
                ("command".to_owned(), "ls".to_owned()),
                ("opts.script".to_owned(), "echo".to_owned())
            ]
        );
        assert_eq!(code_arguments(&args, true).len(), 3);
    }
}
