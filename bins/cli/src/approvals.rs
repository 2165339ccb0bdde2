//! `palisade approvals list|show|approve|deny`: talks to a running gateway's admin API
//! (`/admin/approvals`), authenticated with the admin token from `PALISADE_ADMIN_TOKEN`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

/// Where the gateway is and who decides.
#[derive(Args)]
pub struct ApprovalsArgs {
    #[command(subcommand)]
    command: ApprovalsCommand,
    /// Base URL of the running gateway.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:4100",
        env = "PALISADE_GATEWAY_URL"
    )]
    gateway: String,
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// List approval requests (oldest first).
    List {
        /// Only requests with this status: pending, approved, denied, timed_out, cancelled.
        #[arg(long)]
        status: Option<String>,
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one request as JSON (the exact tool call or message, rule, reason, agent).
    Show {
        /// Approval id (`apr_…`).
        id: String,
    },
    /// Approve a pending request: the held turn goes on (or its retry passes).
    Approve(Decide),
    /// Deny a pending request: the held turn is blocked.
    Deny(Decide),
}

#[derive(Args)]
struct Decide {
    /// Approval id (`apr_…`).
    id: String,
    /// Who decides (recorded in the audit chain); default `$USER`.
    #[arg(long)]
    approver: Option<String>,
    /// A note recorded with the decision.
    #[arg(long)]
    note: Option<String>,
}

enum Failure {
    /// The gateway answered with a refusal (unknown id, already decided): exit 1.
    Refused(String),
    /// Usage, connection or token problem: exit 2.
    Usage(String),
}

/// The environment variable holding the admin token (the gateway reads the same one).
const ADMIN_TOKEN_ENV: &str = "PALISADE_ADMIN_TOKEN";

fn token() -> Result<String, Failure> {
    std::env::var(ADMIN_TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Failure::Usage(format!(
                "approvals: set {ADMIN_TOKEN_ENV} to the gateway's admin token"
            ))
        })
}

async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, Failure> {
    let token = token()?;
    let url = format!("{}{}", base.trim_end_matches('/'), path);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| Failure::Usage(format!("approvals: cannot build an http client: {e}")))?;
    let mut req = client.request(method, &url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.map_err(|e| {
        Failure::Usage(format!(
            "approvals: cannot reach the gateway at {base}: {e}"
        ))
    })?;
    let status = res.status();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(v);
    }
    let msg = v["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("status {status}"));
    match status.as_u16() {
        404 | 409 => Err(Failure::Refused(format!("approvals: {msg}"))),
        _ => Err(Failure::Usage(format!(
            "approvals: the gateway refused ({}): {msg}",
            status.as_u16()
        ))),
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("-")
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// The table `approvals list` prints.
fn table(list: &[Value]) -> String {
    if list.is_empty() {
        return "no approval requests\n".to_owned();
    }
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|v| {
            [
                s(v, "id").to_owned(),
                s(v, "status").to_owned(),
                s(v, "agent").to_owned(),
                s(v, "rule").to_owned(),
                s(v, "location").to_owned(),
                one_line(s(v, "reason"), 60),
            ]
        })
        .collect();
    let head = ["ID", "STATUS", "AGENT", "RULE", "WHERE", "REASON"];
    let mut widths = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        l.trim_end().to_owned() + "\n"
    };
    out.push_str(&line(&head));
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        out.push_str(&line(&cells));
    }
    out
}

async fn run(args: ApprovalsArgs) -> Result<(), Failure> {
    let base = args.gateway;
    match args.command {
        ApprovalsCommand::List { status, json } => {
            let path = match &status {
                Some(st) => format!("/admin/approvals?status={st}"),
                None => "/admin/approvals".to_owned(),
            };
            let v = call(&base, reqwest::Method::GET, &path, None).await?;
            if json {
                println!("{v}");
            } else {
                let list = v["approvals"].as_array().cloned().unwrap_or_default();
                print!("{}", table(&list));
            }
        }
        ApprovalsCommand::Show { id } => {
            let v = call(
                &base,
                reqwest::Method::GET,
                &format!("/admin/approvals/{id}"),
                None,
            )
            .await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
            );
        }
        cmd @ (ApprovalsCommand::Approve(_) | ApprovalsCommand::Deny(_)) => {
            let (action, d) = match cmd {
                ApprovalsCommand::Approve(d) => ("approve", d),
                ApprovalsCommand::Deny(d) => ("deny", d),
                _ => return Ok(()),
            };
            let approver = d
                .approver
                .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
                .unwrap_or_else(|| "cli".to_owned());
            let body = serde_json::json!({"approver": approver, "note": d.note});
            let v = call(
                &base,
                reqwest::Method::POST,
                &format!("/admin/approvals/{}/{action}", d.id),
                Some(body),
            )
            .await?;
            println!(
                "{} {} (rule `{}`, agent `{}`) by {}",
                s(&v, "status"),
                s(&v, "id"),
                s(&v, "rule"),
                s(&v, "agent"),
                s(&v, "approver"),
            );
        }
    }
    Ok(())
}

/// Runs `palisade approvals …`: 0 done, 1 refused by the gateway, 2 usage or connection.
pub fn approvals(args: ApprovalsArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("approvals: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(m)) => {
            eprintln!("{m}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(m)) => {
            eprintln!("{m}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_requests() {
        let list = vec![serde_json::json!({
            "id": "apr_1", "status": "pending", "agent": "tool_agent",
            "rule": "approve-external", "location": "choices[0].message.tool_calls[0]",
            "reason": "External calls\nneed approval"
        })];
        assert_eq!(
            table(&list),
            "ID     STATUS   AGENT       RULE              WHERE                             REASON\n\
             apr_1  pending  tool_agent  approve-external  choices[0].message.tool_calls[0]  External calls need approval\n"
        );
        assert_eq!(table(&[]), "no approval requests\n");
    }
}
