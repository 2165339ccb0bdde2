//! Durability: kill -9 the gateway while a load runs, restart it, and show that every request
//! that got a response is in the chain and the chain verifies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Responses acknowledged before the kill.
const KILL_AFTER: usize = 300;

const PACK: &str = r#"
pack: {name: crash-test, version: "1"}
auth: optional
providers:
  - {name: mock, kind: mock, model: [gpt-4o]}
policies:
  chain: [prompt-injection, pii-detector]
policy:
  prompt-injection: {action: block}
  pii-detector: {action: redact}
audit: {durability: sync}
"#;

/// Starts `palisade gateway run` on an OS-chosen port and returns it with its address,
/// read from the "listening on" log line.
fn start(pack: &std::path::Path, data: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args([
            "gateway",
            "run",
            "--listen",
            "127.0.0.1:0",
            "--policy-config",
        ])
        .arg(pack)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "info")
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("gateway exited before listening")
            .unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

async fn one_request(client: &reqwest::Client, addr: &str, i: usize) -> Option<String> {
    let body = serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": format!("turn {i}: status?")}]});
    let res = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .ok()?;
    if res.status() != 200 {
        return None;
    }
    let id = res
        .headers()
        .get("x-palisade-event")?
        .to_str()
        .ok()?
        .to_owned();
    // The response is only "acknowledged" once its body arrived completely.
    res.bytes().await.ok()?;
    Some(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("pack.yaml");
    std::fs::write(&pack, PACK).unwrap();
    let data = dir.path().join("data");
    let (mut child, addr) = start(&pack, &data);

    // Event ids acknowledged to clients (a complete response carrying `x-palisade-event`).
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let enough = Arc::new(Notify::new());
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (acked, enough, client, addr) =
            (acked.clone(), enough.clone(), client.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..10_000 {
                match one_request(&client, &addr, w * 100_000 + i).await {
                    Some(id) => {
                        let mut a = acked.lock().unwrap();
                        a.push(id);
                        if a.len() == KILL_AFTER {
                            enough.notify_one();
                        }
                    }
                    None => return,
                }
            }
        }));
    }
    // Kill -9 once enough responses were acknowledged, while the load still runs.
    enough.notified().await;
    child.kill().unwrap(); // SIGKILL on unix
    child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= KILL_AFTER);

    // Restart on the same store: it must open, continue the chain and serve.
    let (mut child, addr) = start(&pack, &data);
    let after = one_request(&client, &addr, 999_999)
        .await
        .expect("restarted gateway serves");
    child.kill().unwrap();
    child.wait().unwrap();

    let db = audit_chain::db_path(&data);
    let report = audit_chain::verify_store(&db, &Default::default()).unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    let stored: HashSet<String> = audit_chain::open_events(&db, Default::default())
        .unwrap()
        .map(|e| e.unwrap().id)
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert!(stored.contains(&after));
}
