//! Shared helpers for the cross-crate end-to-end tests: a mock OpenAI upstream and a real
//! gateway, both on `127.0.0.1:0`, with a pack written into a fresh data directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use provider_clients::mock_server::MockUpstream;

/// Error type of the helpers.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A running gateway in front of a running mock upstream.
pub struct TestEnv {
    /// The mock OpenAI upstream.
    pub upstream: MockUpstream,
    /// The gateway.
    pub gateway: gateway::RunningGateway,
    /// Temp dir holding the pack and the data dir.
    pub dir: tempfile::TempDir,
    /// The pack file.
    pub pack_path: PathBuf,
}

/// Environment variable the test packs read the upstream key from.
pub const UPSTREAM_KEY_ENV: &str = "PALISADE_TEST_UPSTREAM_KEY";

impl TestEnv {
    /// Starts an upstream, writes `pack` (with `{UPSTREAM}` replaced by the upstream's base
    /// URL) and starts a gateway with it.
    pub async fn start(pack: &str) -> Result<TestEnv, Error> {
        let upstream = MockUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let dir = tempfile::tempdir()?;
        let key_file = dir.path().join("upstream.key");
        std::fs::write(&key_file, "test-upstream-key\n")?;
        let pack_text = pack
            .replace("{UPSTREAM}", &upstream.base_url())
            .replace("{KEY_FILE}", &key_file.display().to_string());
        let pack_path = dir.path().join("pack.yaml");
        std::fs::write(&pack_path, pack_text)?;
        let mut config = gateway::GatewayConfig::new(&pack_path);
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.data_dir = dir.path().join("data");
        let gateway = gateway::spawn(config).await?;
        Ok(TestEnv {
            upstream,
            gateway,
            dir,
            pack_path,
        })
    }

    /// `http://addr/v1`.
    pub fn base_url(&self) -> String {
        self.gateway.base_url()
    }

    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.gateway.addr(), path)
    }

    /// Creates an agent key.
    pub fn key(&self, agent: &str, role: &str) -> Result<String, Error> {
        Ok(self.gateway.keys().create(agent, Some(role), None)?.key)
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// A pack with an OpenAI-compatible provider at the mock upstream, auth required, and the
/// default detector chain.
pub const DEFAULT_PACK: &str = r#"
pack: {name: e2e, version: "1.0"}
auth: required
providers:
  - name: upstream
    kind: openai
    base_url: "{UPSTREAM}"
    model: [gpt-4o, gpt-4o-mini, fault-500, fault-503, fault-reset, fault-slow-3000, fault-cut-stream, fault-malformed]
    secret_key_ref: {file: "{KEY_FILE}"}
    timeout_seconds: 1
policies:
  chain: [prompt-injection, pii-detector, secrets-detector, safety-filter, quality-scorer]
policy:
  prompt-injection: {action: block}
  pii-detector: {action: redact}
  secrets-detector: {action: redact}
  safety-filter: {action: block}
  quality-scorer: {threshold: 0.6}
limits: {max_body_bytes: 65536}
"#;

impl TestEnv {
    /// Like [`TestEnv::start`], with `shadow` (same placeholders) written beside the pack and
    /// evaluated as the `--shadow-policy` candidate.
    pub async fn start_with_shadow(pack: &str, shadow: &str) -> Result<TestEnv, Error> {
        let upstream = MockUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let dir = tempfile::tempdir()?;
        let key_file = dir.path().join("upstream.key");
        std::fs::write(&key_file, "test-upstream-key\n")?;
        let fill = |text: &str| {
            text.replace("{UPSTREAM}", &upstream.base_url())
                .replace("{KEY_FILE}", &key_file.display().to_string())
        };
        let pack_path = dir.path().join("pack.yaml");
        std::fs::write(&pack_path, fill(pack))?;
        let shadow_path = dir.path().join("shadow.yaml");
        std::fs::write(&shadow_path, fill(shadow))?;
        let mut config = gateway::GatewayConfig::new(&pack_path);
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.data_dir = dir.path().join("data");
        config.shadow_policy = Some(shadow_path);
        let gateway = gateway::spawn(config).await?;
        Ok(TestEnv {
            upstream,
            gateway,
            dir,
            pack_path,
        })
    }
}

/// The `palisade` binary: `PALISADE_BIN` when set, else built with the running cargo into the
/// same target directory and profile as this test (a no-op when up to date). The binary
/// belongs to another package, so `CARGO_BIN_EXE_*` is not available here.
pub fn palisade_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("PALISADE_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().unwrap_or_default();
        // target/<profile>/deps/<test> -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(|p| p.parent())
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let target_dir = profile_dir
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let mut cmd =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "palisade-cli",
            "--bin",
            "palisade",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            cmd.arg("--release");
        }
        match cmd.status() {
            Ok(s) if s.success() => {}
            other => eprintln!("building the palisade binary failed: {other:?}"),
        }
        profile_dir.join(format!("palisade{}", std::env::consts::EXE_SUFFIX))
    })
    .clone()
}

/// POSTs `body` as JSON to `url` with the gateway key `key` (a raw request, for tests that
/// read status codes and headers the OpenAI client hides).
pub async fn post_json(
    url: impl reqwest::IntoUrl,
    key: impl std::fmt::Display,
    body: &serde_json::Value,
) -> Result<reqwest::Response, reqwest::Error> {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(key)
        .json(body)
        .send()
        .await
}
