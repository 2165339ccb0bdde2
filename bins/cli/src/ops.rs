//! Subcommands: parse nothing, call a library, print, map to an exit code.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

const CHECK_FAILED: u8 = 1;
/// The pack `palisade scan` uses without `--policy-config`.
const BUNDLED_DEFAULT_PACK: &str = include_str!("../../../policy-packs/autogen-default.yaml");
const BAD_INPUT: u8 = 2;

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(code)
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key for an agent; prints the key (only this once) on stdout.
    Create {
        /// Agent name (as the agent calls itself, e.g. its AutoGen name).
        #[arg(long)]
        agent: String,
        /// Role.
        #[arg(long)]
        role: Option<String>,
        /// Workflow.
        #[arg(long)]
        workflow: Option<String>,
    },
    /// List keys (never the keys themselves).
    List {
        /// Output format.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// Revoke a key by id.
    Revoke {
        /// Key id (from `keys list`).
        id: String,
    },
}

pub fn keys(cmd: KeysCommand, data_dir: &Path) -> ExitCode {
    let store = match gateway::KeyStore::open(data_dir) {
        Ok(s) => s,
        Err(e) => return fail(BAD_INPUT, e),
    };
    match cmd {
        KeysCommand::Create {
            agent,
            role,
            workflow,
        } => match store.create(&agent, role.as_deref(), workflow.as_deref()) {
            Ok(k) => {
                println!("{}", k.key);
                eprintln!(
                    "created key {} for agent `{}` (store it now: it is not shown again)",
                    k.record.id, k.record.agent
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(BAD_INPUT, e),
        },
        KeysCommand::List { format } => match store.list() {
            Ok(keys) => {
                if format == "json" {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&keys).unwrap_or_default()
                    );
                } else {
                    println!(
                        "{:<10} {:<20} {:<14} {:<14} {:<26} STATUS",
                        "ID", "AGENT", "ROLE", "WORKFLOW", "CREATED"
                    );
                    for k in keys {
                        println!(
                            "{:<10} {:<20} {:<14} {:<14} {:<26} {}",
                            k.id,
                            k.agent,
                            k.role.as_deref().unwrap_or("-"),
                            k.workflow.as_deref().unwrap_or("-"),
                            k.created_at,
                            if k.revoked_at.is_some() {
                                "revoked"
                            } else {
                                "active"
                            }
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(BAD_INPUT, e),
        },
        KeysCommand::Revoke { id } => match store.revoke(&id) {
            Ok(r) => {
                println!("revoked key {} (agent `{}`)", r.id, r.agent);
                ExitCode::SUCCESS
            }
            Err(e) => fail(BAD_INPUT, e),
        },
    }
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain (and signed checkpoints with --public-key).
    Verify {
        /// Start at this sequence number.
        #[arg(long)]
        from: Option<u64>,
        /// Ed25519 public key file from `audit keygen`.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Verify a JSONL export instead of the store.
        #[arg(long)]
        jsonl: Option<PathBuf>,
    },
    /// Export events as JSONL (one object per line).
    Export {
        /// Only events newer than this (e.g. `24h`, `7d`) or since an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Format.
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
        format: String,
    },
    /// Print the latest events and follow new ones.
    Tail {
        /// Keep following.
        #[arg(long, short = 'f')]
        follow: bool,
        /// How many recent events to print first.
        #[arg(long, short = 'n', default_value_t = 10)]
        lines: usize,
    },
    /// Generate an Ed25519 key pair for signed checkpoints.
    Keygen {
        /// Output directory.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

/// `--since`: a duration back from now (`24h`, `7d`) or an RFC 3339 time.
fn since_to_rfc3339(since: &str) -> Result<String, String> {
    if let Ok(d) = humantime::parse_duration(since) {
        let t = std::time::SystemTime::now()
            .checked_sub(d)
            .unwrap_or(std::time::UNIX_EPOCH);
        return Ok(humantime::format_rfc3339_micros(t).to_string());
    }
    if humantime::parse_rfc3339_weak(since).is_ok() {
        return Ok(since.to_owned());
    }
    Err(format!(
        "invalid --since `{since}`: use a duration like `24h` or an RFC 3339 time"
    ))
}

pub fn audit(cmd: AuditCommand, data_dir: &Path) -> ExitCode {
    let db = audit_chain::db_path(data_dir);
    match cmd {
        AuditCommand::Verify {
            from,
            public_key,
            jsonl,
        } => {
            let public_key = match public_key {
                None => None,
                Some(p) => match std::fs::read_to_string(&p) {
                    Ok(text) => {
                        match audit_chain::PublicKey::parse(&text, &p.display().to_string()) {
                            Ok(k) => Some(k),
                            Err(e) => return fail(BAD_INPUT, e),
                        }
                    }
                    Err(e) => {
                        return fail(
                            BAD_INPUT,
                            format!("cannot read public key `{}`: {e}", p.display()),
                        );
                    }
                },
            };
            let opts = audit_chain::VerifyOptions {
                from_seq: from,
                public_key,
            };
            match audit_chain::verify(data_dir, jsonl.as_deref(), &opts) {
                Ok(report) => match &report.broken {
                    None => {
                        println!(
                            "ok: {} events verified (seq {}..{}), {} signed checkpoints{}",
                            report.events_verified,
                            report
                                .first_seq
                                .map(|s| s.to_string())
                                .unwrap_or_else(|| "-".into()),
                            report
                                .last_seq
                                .map(|s| s.to_string())
                                .unwrap_or_else(|| "-".into()),
                            report.checkpoints_verified,
                            if report.unsigned_tail > 0 {
                                format!(
                                    ", {} events after the last checkpoint",
                                    report.unsigned_tail
                                )
                            } else {
                                String::new()
                            }
                        );
                        if let Some(h) = &report.head_hash {
                            println!("head: {h}");
                        }
                        ExitCode::SUCCESS
                    }
                    Some(b) => {
                        println!("BROKEN at seq {}: {:?}: {}", b.seq, b.kind, b.message);
                        ExitCode::from(CHECK_FAILED)
                    }
                },
                Err(e) => fail(BAD_INPUT, e),
            }
        }
        AuditCommand::Export { since, format: _ } => {
            let since = match since.as_deref().map(since_to_rfc3339).transpose() {
                Ok(s) => s,
                Err(e) => return fail(BAD_INPUT, e),
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let res = audit_chain::export(&db, since.as_deref(), &mut out);
            let _ = out.flush();
            match res {
                Ok(summary) => {
                    eprintln!("exported {} events", summary.events);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(BAD_INPUT, e),
            }
        }
        AuditCommand::Tail { follow, lines } => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let opts = audit_chain::TailOptions {
                last: lines as u64,
                follow,
                ..audit_chain::TailOptions::default()
            };
            match audit_chain::tail_with(&db, &opts, &mut out) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(BAD_INPUT, e),
            }
        }
        AuditCommand::Keygen { out } => match audit_chain::keygen(&out) {
            Ok(files) => {
                println!("private key: {}", files.private_key.display());
                println!("public key:  {}", files.public_key.display());
                println!("key id:      {}", files.key_id);
                eprintln!(
                    "point the pack at the private key: audit: {{checkpoint: {{signing_key_ref: {{file: {}}}}}}}",
                    files.private_key.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(BAD_INPUT, e),
        },
    }
}

#[derive(Subcommand)]
pub enum CostCommand {
    /// Spend by agent, role, workflow, conversation or model.
    Report {
        /// Grouping.
        #[arg(long, default_value = "agent", value_parser = ["agent", "role", "workflow", "conversation", "model"])]
        by: String,
        /// Only spend newer than this (e.g. `24h`, `7d`).
        #[arg(long)]
        since: Option<String>,
        /// Output format.
        #[arg(long, default_value = "table", value_parser = ["table", "json", "csv"])]
        format: String,
    },
}

pub fn cost(cmd: CostCommand, data_dir: &Path) -> ExitCode {
    match cmd {
        CostCommand::Report { by, since, format } => {
            let since = match since.as_deref().map(humantime::parse_duration).transpose() {
                Ok(s) => s,
                Err(e) => {
                    return fail(
                        BAD_INPUT,
                        format!("invalid --since: {e} (use e.g. `24h`, `7d`)"),
                    );
                }
            };
            let (Ok(by), Ok(format)) = (by.parse(), format.parse()) else {
                return fail(BAD_INPUT, "invalid --by or --format");
            };
            match cost_accounting::report(data_dir, by, since, format) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(BAD_INPUT, e),
            }
        }
    }
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate a pack: every error with file, line, column and key.
    Validate {
        /// Pack file.
        file: PathBuf,
    },
    /// Run a pack's test cases.
    Test {
        /// Pack file.
        pack: PathBuf,
    },
}

pub fn policy(cmd: PolicyCommand) -> ExitCode {
    match cmd {
        PolicyCommand::Validate { file } => match policy_engine::validate_file(&file) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(CHECK_FAILED)
            }
        },
        PolicyCommand::Test { pack } => {
            let report = policy_engine::testing::run_pack_tests(&pack);
            print!("{report}");
            if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(CHECK_FAILED)
            }
        }
    }
}

#[derive(clap::Args)]
pub struct ScanArgs {
    /// Pack whose thresholds and actions to use (default: the bundled default pack).
    #[arg(long)]
    policy_config: Option<PathBuf>,
    /// Scan this text and print a table instead of reading JSONL from stdin.
    #[arg(long)]
    text: Option<String>,
}

pub fn scan(args: ScanArgs) -> ExitCode {
    let pack = match &args.policy_config {
        Some(p) => policy_engine::CompiledPack::load(p),
        None => policy_engine::CompiledPack::from_yaml(
            BUNDLED_DEFAULT_PACK,
            "bundled:autogen-default.yaml",
        ),
    };
    let pack = match pack {
        Ok(p) => p,
        Err(e) => return fail(BAD_INPUT, e),
    };
    if let Some(text) = args.text {
        print!("{}", policy_engine::scan::scan_text_table(&pack, &text));
        return ExitCode::SUCCESS;
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let res = policy_engine::scan::scan_jsonl(&pack, stdin.lock(), &mut out);
    let _ = out.flush();
    match res {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(BAD_INPUT, e),
    }
}
