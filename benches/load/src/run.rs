//! The runner behind `run.sh`: starts the upstream, the floor proxy and two gateways
//! (empty pack, default pack), then measures them with `wrk` in interleaved rounds
//! (direct → floor → Palisade empty → Palisade default at each connection count), samples
//! CPU and memory of the server under test from `/proc`, probes streaming, and writes a
//! table and JSON. Every load goes to 127.0.0.1 and is bounded in time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use serde::Serialize;

use crate::probe::{self, ProbeConfig, ProbeReport};
use crate::procstat;

/// Flags of `palisade-load run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Connection counts, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub connections: Vec<usize>,
    /// Seconds per cell and round.
    #[arg(long, default_value_t = 4)]
    pub duration: u64,
    /// Rounds (each round visits every cell once, targets interleaved).
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Targets, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,floor,palisade-empty,palisade-default"
    )]
    pub targets: Vec<String>,
    /// Streamed requests per target and round (0 skips streaming).
    #[arg(long, default_value_t = 100)]
    pub stream_requests: usize,
    /// Concurrent streams of the streaming probe.
    #[arg(long, default_value_t = 1)]
    pub stream_concurrency: usize,
    /// Milliseconds between the upstream's SSE events.
    #[arg(long, default_value_t = 2)]
    pub chunk_delay_ms: u64,
    /// After the matrix, a soak of this many seconds against the default pack.
    #[arg(long, default_value_t = 0)]
    pub soak: u64,
    /// Connections of the soak.
    #[arg(long, default_value_t = 16)]
    pub soak_connections: usize,
    /// First of four consecutive ports (upstream, floor, empty, default).
    #[arg(long, default_value_t = 18400)]
    pub port_base: u16,
    /// `RUST_LOG` of the gateways (their default is `info`: one access line per request).
    #[arg(long, default_value = "info")]
    pub gateway_log: String,
    /// Directory with `palisade-gateway` (default: this binary's directory).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// The packs (`empty.yaml`, `default.yaml`).
    #[arg(long, default_value = "benches/load/packs")]
    pub packs: PathBuf,
    /// Results directory (a timestamped run folder is made inside).
    #[arg(long, default_value = "benches/load/results")]
    pub out: PathBuf,
}

/// Kills (and reaps) the processes it owns when dropped.
struct Procs(Vec<(String, Child)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Target {
    name: String,
    addr: SocketAddr,
    /// The server whose CPU and memory the cell reports.
    pid: u32,
    /// Extra headers (the gateway key for the default pack).
    headers: Vec<(String, String)>,
}

/// One wrk run.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
struct Wrk {
    requests: u64,
    duration_us: u64,
    errors_connect: u64,
    errors_read: u64,
    errors_write: u64,
    errors_status: u64,
    errors_timeout: u64,
    lat_p50_us: f64,
    lat_p90_us: f64,
    lat_p99_us: f64,
    lat_p999_us: f64,
    lat_mean_us: f64,
    lat_max_us: f64,
}

impl Wrk {
    fn errors(&self) -> u64 {
        self.errors_connect
            + self.errors_read
            + self.errors_write
            + self.errors_status
            + self.errors_timeout
    }
    fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }
}

/// One measured cell of one round.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    round: usize,
    target: String,
    connections: usize,
    wrk: Wrk,
    server_cpu_ms: f64,
    upstream_cpu_ms: f64,
    rss_bytes: u64,
    hwm_bytes: u64,
}

/// A cell aggregated over rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    target: String,
    connections: usize,
    requests: u64,
    errors: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    added_p50_ms: Option<f64>,
    added_p99_ms: Option<f64>,
    cpu_ms_per_req: f64,
    upstream_cpu_ms_per_req: f64,
    peak_rss_mb: f64,
}

#[derive(Debug, Clone, Serialize)]
struct StreamCell {
    target: String,
    rounds: Vec<ProbeReport>,
    ttft_p50_ms: f64,
    ttft_p99_ms: f64,
    inter_chunk_p50_ms: f64,
    inter_chunk_p99_ms: f64,
    added_ttft_p50_vs_direct_ms: Option<f64>,
    added_ttft_p50_vs_floor_ms: Option<f64>,
    errors: usize,
}

#[derive(Debug, Clone, Serialize)]
struct SoakSlice {
    t_s: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    rss_mb: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Check {
    target: String,
    measured: String,
    pass: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Report {
    machine: BTreeMap<String, String>,
    command: String,
    args: String,
    cells: Vec<Cell>,
    samples: Vec<Sample>,
    streaming: Vec<StreamCell>,
    soak: Vec<SoakSlice>,
    checks: Vec<Check>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn shell(cmd: &str) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("nproc".into(), shell("nproc"));
    m.insert(
        "cpu".into(),
        shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
    );
    m.insert("memory".into(), shell("free -h | awk '/^Mem:/ {print $2}'"));
    m.insert("kernel".into(), shell("uname -r"));
    m.insert("rustc".into(), shell("rustc --version"));
    m.insert("wrk".into(), shell("wrk -v 2>&1 | head -1"));
    m.insert("loadavg_at_start".into(), shell("cat /proc/loadavg"));
    m
}

async fn wait_listening(addr: SocketAddr, child: &mut Child, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{name} exited before listening on {addr}: {status}");
        }
        if Instant::now() > deadline {
            bail!("{name} is not listening on {addr} after 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))
}

const WRK_LUA: &str = r#"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("LOAD_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"lat_p50_us":%.1f,' ..
    '"lat_p90_us":%.1f,"lat_p99_us":%.1f,"lat_p999_us":%.1f,"lat_mean_us":%.1f,"lat_max_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
"#;

struct Ctx {
    lua: PathBuf,
    body: PathBuf,
    threads: usize,
}

async fn wrk(ctx: &Ctx, t: &Target, conns: usize, secs: u64) -> anyhow::Result<Wrk> {
    let mut cmd = tokio::process::Command::new("wrk");
    cmd.env("LOAD_BODY", &ctx.body)
        .arg("-t")
        .arg(ctx.threads.min(conns).to_string())
        .arg("-c")
        .arg(conns.to_string())
        .arg("-d")
        .arg(format!("{secs}s"))
        .arg("--timeout")
        .arg("5s")
        .arg("-s")
        .arg(&ctx.lua);
    for (k, v) in &t.headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    cmd.arg(format!("http://{}/v1/chat/completions", t.addr));
    let out = cmd
        .output()
        .await
        .context("cannot run wrk (install it: apt-get install -y wrk)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRKJSON "))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "wrk printed no summary: {}{}",
                stdout,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(serde_json::from_str(line)?)
}

/// One request through `t`; returns the status and the `x-palisade-decision` header.
async fn smoke(t: &Target, body: &Bytes) -> anyhow::Result<(u16, String)> {
    use http_body_util::{BodyExt, Full};
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let mut req = http::Request::new(Full::new(body.clone()));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = format!("http://{}/v1/chat/completions", t.addr).parse()?;
    req.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    for (k, v) in &t.headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes())?,
            http::HeaderValue::from_str(v)?,
        );
    }
    let res = client.request(req).await?;
    let status = res.status().as_u16();
    let decision = res
        .headers()
        .get("x-palisade-decision")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let _ = res.into_body().collect().await?;
    Ok((status, decision))
}

fn rewrite_pack(src: &Path, dst: &Path, upstream: SocketAddr) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(src).with_context(|| format!("cannot read {}", src.display()))?;
    std::fs::write(dst, text.replace("127.0.0.1:18400", &upstream.to_string()))?;
    Ok(())
}

/// Runs everything; prints the table; writes `results.json` and `summary.md`.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| anyhow::anyhow!("no directory of the current executable"))?,
    };
    let me = std::env::current_exe()?;
    let gateway_bin = bin_dir.join("palisade-gateway");
    if !gateway_bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p palisade-gateway-bin`",
            gateway_bin.display()
        );
    }
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs();
    let dir = args.out.join(format!("run-{stamp}"));
    std::fs::create_dir_all(&dir)?;
    let ticks = procstat::clock_ticks();

    // Bodies and the wrk script.
    let body = Bytes::from(serde_json::to_vec(&crate::body::chat_body())?);
    let stream_body = Bytes::from(serde_json::to_vec(&crate::body::stream_body())?);
    let body_path = dir.join("body.json");
    std::fs::write(&body_path, &body)?;
    std::fs::write(dir.join("stream-body.json"), &stream_body)?;
    let lua = dir.join("wrk.lua");
    std::fs::write(&lua, WRK_LUA)?;
    let ctx = Ctx {
        lua,
        body: body_path.canonicalize()?,
        threads: args.threads,
    };
    println!("results: {} (body {} bytes)", dir.display(), body.len());

    let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], args.port_base + i));
    let (up_addr, floor_addr, empty_addr, default_addr) = (addr(0), addr(1), addr(2), addr(3));
    let mut procs = Procs(Vec::new());
    // A port already in use would let the readiness probe reach whatever listens there
    // (a stray upstream from an earlier run, say) and measure that instead.
    for (a, what) in [
        (up_addr, "upstream"),
        (floor_addr, "floor proxy"),
        (empty_addr, "gateway (empty pack)"),
        (default_addr, "gateway (default pack)"),
    ] {
        std::net::TcpListener::bind(a).map_err(|e| {
            anyhow::anyhow!(
                "port {a} for the {what} is in use ({e}): stop what listens there, or pass --port-base"
            )
        })?;
    }

    let mut up = spawn(
        Command::new(&me)
            .arg("upstream")
            .arg("--listen")
            .arg(up_addr.to_string())
            .arg("--chunk-delay-ms")
            .arg(args.chunk_delay_ms.to_string()),
        &dir.join("upstream.log"),
    )?;
    wait_listening(up_addr, &mut up, "upstream").await?;
    let up_pid = up.id();
    procs.0.push(("upstream".into(), up));

    let mut floor = spawn(
        Command::new(&me)
            .arg("floor")
            .arg("--listen")
            .arg(floor_addr.to_string())
            .arg("--upstream")
            .arg(up_addr.to_string()),
        &dir.join("floor.log"),
    )?;
    wait_listening(floor_addr, &mut floor, "floor proxy").await?;
    let floor_pid = floor.id();
    procs.0.push(("floor".into(), floor));

    let mut gateways = Vec::new();
    for (name, a) in [("empty", empty_addr), ("default", default_addr)] {
        let data = dir.join(format!("data-{name}"));
        std::fs::create_dir_all(&data)?;
        let pack = dir.join(format!("{name}.yaml"));
        rewrite_pack(&args.packs.join(format!("{name}.yaml")), &pack, up_addr)?;
        // A gateway key for the default pack (auth: required); created before the gateway
        // opens the store. Sent by every load generator run against that gateway only.
        let mut headers = Vec::new();
        if name == "default" {
            let store = gateway::KeyStore::open(&data)?;
            let k = store.create("load-agent", Some("worker"), Some("load"))?;
            headers.push(("Authorization".to_owned(), format!("Bearer {}", k.key)));
        }
        let mut child = spawn(
            Command::new(&gateway_bin)
                .env("RUST_LOG", &args.gateway_log)
                .arg("--policy-config")
                .arg(&pack)
                .arg("--listen")
                .arg(a.to_string())
                .arg("--data-dir")
                .arg(&data),
            &dir.join(format!("gateway-{name}.log")),
        )?;
        wait_listening(a, &mut child, &format!("gateway ({name} pack)")).await?;
        gateways.push((name, a, child.id(), headers));
        procs.0.push((format!("gateway-{name}"), child));
    }

    let mut targets: Vec<Target> = Vec::new();
    for name in &args.targets {
        let t = match name.as_str() {
            "direct" => Target {
                name: name.clone(),
                addr: up_addr,
                pid: up_pid,
                headers: Vec::new(),
            },
            "floor" => Target {
                name: name.clone(),
                addr: floor_addr,
                pid: floor_pid,
                headers: Vec::new(),
            },
            "palisade-empty" | "palisade-default" => {
                let which = name.trim_start_matches("palisade-");
                let Some((_, a, pid, h)) = gateways.iter().find(|g| g.0 == which) else {
                    bail!("no gateway `{which}`");
                };
                Target {
                    name: name.clone(),
                    addr: *a,
                    pid: *pid,
                    headers: h.clone(),
                }
            }
            other => {
                bail!("unknown target `{other}` (direct, floor, palisade-empty, palisade-default)")
            }
        };
        targets.push(t);
    }

    // Smoke: every target answers 200; the gateways say what they decided.
    for t in &targets {
        let (status, decision) = smoke(t, &body).await?;
        println!("smoke {:<17} status {status} decision {decision}", t.name);
        if status != 200 {
            bail!(
                "{} answered {status} to the load body; see the logs in {}",
                t.name,
                dir.display()
            );
        }
    }
    // Warm-up: connections, pools, caches.
    for t in &targets {
        let _ = wrk(&ctx, t, 16, 1).await?;
    }

    let mut samples: Vec<Sample> = Vec::new();
    for round in 1..=args.rounds {
        for &c in &args.connections {
            for t in &targets {
                let cpu0 = procstat::cpu_time(t.pid, ticks)?;
                let ucpu0 = procstat::cpu_time(up_pid, ticks)?;
                let w = wrk(&ctx, t, c, args.duration).await?;
                let cpu1 = procstat::cpu_time(t.pid, ticks)?;
                let ucpu1 = procstat::cpu_time(up_pid, ticks)?;
                let (rss, hwm) = procstat::memory(t.pid)?;
                println!(
                    "round {round} c={c:<3} {:<17} {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  errors {}",
                    t.name,
                    w.rps(),
                    w.lat_p50_us / 1000.0,
                    w.lat_p99_us / 1000.0,
                    w.errors()
                );
                samples.push(Sample {
                    round,
                    target: t.name.clone(),
                    connections: c,
                    server_cpu_ms: (cpu1 - cpu0).as_secs_f64() * 1000.0,
                    upstream_cpu_ms: (ucpu1 - ucpu0).as_secs_f64() * 1000.0,
                    rss_bytes: rss,
                    hwm_bytes: hwm,
                    wrk: w,
                });
            }
        }
    }
    let cells = aggregate(&samples, &targets, &args.connections);

    // Streaming.
    let mut streaming = Vec::new();
    if args.stream_requests > 0 {
        let mut per: BTreeMap<String, Vec<ProbeReport>> = BTreeMap::new();
        for round in 1..=args.rounds {
            for t in &targets {
                let mut headers = Vec::new();
                for (k, v) in &t.headers {
                    headers.push((
                        http::HeaderName::from_bytes(k.as_bytes())?,
                        http::HeaderValue::from_str(v)?,
                    ));
                }
                let cfg = ProbeConfig {
                    url: format!("http://{}/v1/chat/completions", t.addr).parse()?,
                    body: stream_body.clone(),
                    headers,
                    requests: args.stream_requests,
                    concurrency: args.stream_concurrency,
                };
                let r = probe::run(cfg).await;
                println!(
                    "stream round {round} {:<17} ttft p50 {:>7.3} ms p99 {:>7.3} ms  inter-chunk p50 {:>7.3} ms p99 {:>7.3} ms  errors {}",
                    t.name,
                    r.ttft_p50_ms,
                    r.ttft_p99_ms,
                    r.inter_chunk_p50_ms,
                    r.inter_chunk_p99_ms,
                    r.errors
                );
                per.entry(t.name.clone()).or_default().push(r);
            }
        }
        let ttft_of = |name: &str| {
            per.get(name)
                .map(|v| median(v.iter().map(|r| r.ttft_p50_ms).collect()))
        };
        let direct = ttft_of("direct");
        let floor = ttft_of("floor");
        for t in &targets {
            let Some(v) = per.get(&t.name) else { continue };
            let ttft = median(v.iter().map(|r| r.ttft_p50_ms).collect());
            streaming.push(StreamCell {
                target: t.name.clone(),
                ttft_p50_ms: ttft,
                ttft_p99_ms: median(v.iter().map(|r| r.ttft_p99_ms).collect()),
                inter_chunk_p50_ms: median(v.iter().map(|r| r.inter_chunk_p50_ms).collect()),
                inter_chunk_p99_ms: median(v.iter().map(|r| r.inter_chunk_p99_ms).collect()),
                added_ttft_p50_vs_direct_ms: direct.map(|d| ttft - d),
                added_ttft_p50_vs_floor_ms: floor.map(|f| ttft - f),
                errors: v.iter().map(|r| r.errors).sum(),
                rounds: v.clone(),
            });
        }
    }

    // Soak.
    let mut soak = Vec::new();
    if args.soak > 0 {
        let Some(t) = targets
            .iter()
            .find(|t| t.name == "palisade-default")
            .or(targets.last())
        else {
            bail!("no target to soak");
        };
        let slice = 10u64.min(args.soak);
        let started = Instant::now();
        println!(
            "soak: {} s against {} at c={}",
            args.soak, t.name, args.soak_connections
        );
        while started.elapsed().as_secs() + slice <= args.soak {
            let w = wrk(&ctx, t, args.soak_connections, slice).await?;
            let (rss, _) = procstat::memory(t.pid)?;
            let s = SoakSlice {
                t_s: started.elapsed().as_secs(),
                rps: w.rps(),
                p50_ms: w.lat_p50_us / 1000.0,
                p99_ms: w.lat_p99_us / 1000.0,
                errors: w.errors(),
                rss_mb: rss as f64 / 1048576.0,
            };
            println!(
                "soak t={:>4} s {:>9.0} req/s p50 {:>7.3} ms p99 {:>7.3} ms rss {:>6.1} MB errors {}",
                s.t_s, s.rps, s.p50_ms, s.p99_ms, s.rss_mb, s.errors
            );
            soak.push(s);
        }
    }

    let checks = checks(&cells, &streaming, &soak);
    let report = Report {
        machine: machine(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        args: format!("{args:?}"),
        cells,
        samples,
        streaming,
        soak,
        checks,
    };
    let md = render(&report);
    println!("\n{md}");
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    std::fs::write(dir.join("summary.md"), &md)?;
    std::fs::write(
        args.out.join("latest.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    std::fs::write(args.out.join("latest.md"), &md)?;
    println!("wrote {}/results.json and summary.md", dir.display());
    drop(procs);
    Ok(())
}

fn aggregate(samples: &[Sample], targets: &[Target], conns: &[usize]) -> Vec<Cell> {
    let mut cells = Vec::new();
    for &c in conns {
        for t in targets {
            let mine: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.target == t.name && s.connections == c)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let direct_of = |round: usize| {
                samples
                    .iter()
                    .find(|s| s.target == "direct" && s.connections == c && s.round == round)
            };
            let added = |f: fn(&Wrk) -> f64| -> Option<f64> {
                let v: Vec<f64> = mine
                    .iter()
                    .filter_map(|s| direct_of(s.round).map(|d| (f(&s.wrk) - f(&d.wrk)) / 1000.0))
                    .collect();
                (!v.is_empty()).then(|| median(v))
            };
            let requests: u64 = mine.iter().map(|s| s.wrk.requests).sum();
            let cpu: f64 = mine.iter().map(|s| s.server_cpu_ms).sum();
            let ucpu: f64 = mine.iter().map(|s| s.upstream_cpu_ms).sum();
            cells.push(Cell {
                target: t.name.clone(),
                connections: c,
                requests,
                errors: mine.iter().map(|s| s.wrk.errors()).sum(),
                rps: mine.iter().map(|s| s.wrk.rps()).sum::<f64>() / mine.len() as f64,
                p50_ms: median(mine.iter().map(|s| s.wrk.lat_p50_us / 1000.0).collect()),
                p99_ms: median(mine.iter().map(|s| s.wrk.lat_p99_us / 1000.0).collect()),
                added_p50_ms: added(|w| w.lat_p50_us),
                added_p99_ms: added(|w| w.lat_p99_us),
                cpu_ms_per_req: if requests > 0 {
                    cpu / requests as f64
                } else {
                    0.0
                },
                upstream_cpu_ms_per_req: if requests > 0 {
                    ucpu / requests as f64
                } else {
                    0.0
                },
                peak_rss_mb: mine.iter().map(|s| s.hwm_bytes).max().unwrap_or(0) as f64 / 1048576.0,
            });
        }
    }
    cells
}

fn checks(cells: &[Cell], streaming: &[StreamCell], soak: &[SoakSlice]) -> Vec<Check> {
    let mut out = Vec::new();
    let cell = |t: &str, c: usize| cells.iter().find(|x| x.target == t && x.connections == c);
    if let Some(floor) = cell("floor", 64) {
        for (t, min) in [("palisade-default", 0.50), ("palisade-empty", 0.85)] {
            if let Some(p) = cell(t, 64) {
                let r = p.rps / floor.rps;
                out.push(Check {
                    target: format!(
                        "{t}: throughput at 64 connections >= {:.0}% of floor",
                        min * 100.0
                    ),
                    measured: format!("{:.0}% ({:.0} vs {:.0} req/s)", r * 100.0, p.rps, floor.rps),
                    pass: r >= min,
                });
            }
        }
    }
    for t in ["palisade-empty", "palisade-default"] {
        for c in [1, 16] {
            // Added latency needs `direct` in the same run.
            if let Some((a50, a99)) = cell(t, c).and_then(|p| p.added_p50_ms.zip(p.added_p99_ms)) {
                out.push(Check {
                    target: format!(
                        "{t}: added latency at {c} connections <= 0.3 ms p50, <= 1 ms p99"
                    ),
                    measured: format!("p50 +{a50:.3} ms, p99 +{a99:.3} ms"),
                    pass: a50 <= 0.3 && a99 <= 1.0,
                });
            }
        }
        let floor_cpu: Vec<&Cell> = cells.iter().filter(|c| c.target == "floor").collect();
        let mine: Vec<&Cell> = cells.iter().filter(|c| c.target == t).collect();
        if !floor_cpu.is_empty() && !mine.is_empty() {
            let f: f64 = floor_cpu
                .iter()
                .map(|c| c.cpu_ms_per_req * c.requests as f64)
                .sum::<f64>()
                / floor_cpu.iter().map(|c| c.requests as f64).sum::<f64>();
            let m: f64 = mine
                .iter()
                .map(|c| c.cpu_ms_per_req * c.requests as f64)
                .sum::<f64>()
                / mine.iter().map(|c| c.requests as f64).sum::<f64>();
            out.push(Check {
                target: format!("{t}: CPU per request <= 2.5x floor"),
                measured: format!("{:.2}x ({m:.4} vs {f:.4} ms)", m / f),
                pass: m / f <= 2.5,
            });
            let rss = mine.iter().map(|c| c.peak_rss_mb).fold(0.0, f64::max);
            out.push(Check {
                target: format!("{t}: peak RSS <= 64 MB"),
                measured: format!("{rss:.1} MB"),
                pass: rss <= 64.0,
            });
            let errors: u64 = mine.iter().map(|c| c.errors).sum();
            out.push(Check {
                target: format!("{t}: no request errors"),
                measured: format!("{errors}"),
                pass: errors == 0,
            });
        }
    }
    for s in streaming
        .iter()
        .filter(|s| s.target.starts_with("palisade"))
    {
        if let Some(a) = s.added_ttft_p50_vs_direct_ms {
            out.push(Check {
                target: format!("{}: streaming added TTFT <= 1 ms p50 (vs direct)", s.target),
                measured: format!(
                    "+{a:.3} ms (vs floor {:+.3} ms)",
                    s.added_ttft_p50_vs_floor_ms.unwrap_or(f64::NAN)
                ),
                pass: a <= 1.0 && s.errors == 0,
            });
        }
    }
    if soak.len() >= 3 {
        let first = &soak[1];
        let last = &soak[soak.len() - 1];
        let growth = last.rss_mb - first.rss_mb;
        let errors: u64 = soak.iter().map(|s| s.errors).sum();
        out.push(Check {
            target: "soak: RSS stable (growth after the first slice <= 8 MB), no errors".into(),
            measured: format!(
                "{:.1} -> {:.1} MB, p99 {:.3} -> {:.3} ms, errors {errors}",
                first.rss_mb, last.rss_mb, first.p99_ms, last.p99_ms
            ),
            pass: growth <= 8.0 && errors == 0,
        });
    }
    out
}

fn opt(v: Option<f64>) -> String {
    v.map_or("—".to_owned(), |x| format!("{x:+.3}"))
}

fn render(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "machine: {} cores, {} RAM, {}; {}; {}\n\n",
        r.machine.get("nproc").map_or("", String::as_str),
        r.machine.get("memory").map_or("", String::as_str),
        r.machine.get("cpu").map_or("", String::as_str),
        r.machine.get("rustc").map_or("", String::as_str),
        r.machine.get("wrk").map_or("", String::as_str),
    ));
    s.push_str("| target | conns | req/s | p50 ms | p99 ms | +p50 ms vs direct | +p99 ms vs direct | CPU ms/req | peak RSS MB | errors |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for c in &r.cells {
        s.push_str(&format!(
            "| {} | {} | {:.0} | {:.3} | {:.3} | {} | {} | {:.4} | {:.1} | {} |\n",
            c.target,
            c.connections,
            c.rps,
            c.p50_ms,
            c.p99_ms,
            opt(c.added_p50_ms),
            opt(c.added_p99_ms),
            c.cpu_ms_per_req,
            c.peak_rss_mb,
            c.errors
        ));
    }
    if !r.streaming.is_empty() {
        s.push_str("\n| streaming target | TTFT p50 ms | TTFT p99 ms | +TTFT p50 vs direct | +TTFT p50 vs floor | inter-chunk p50 ms | inter-chunk p99 ms | errors |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for c in &r.streaming {
            s.push_str(&format!(
                "| {} | {:.3} | {:.3} | {} | {} | {:.3} | {:.3} | {} |\n",
                c.target,
                c.ttft_p50_ms,
                c.ttft_p99_ms,
                opt(c.added_ttft_p50_vs_direct_ms),
                opt(c.added_ttft_p50_vs_floor_ms),
                c.inter_chunk_p50_ms,
                c.inter_chunk_p99_ms,
                c.errors
            ));
        }
    }
    if !r.soak.is_empty() {
        s.push_str("\n| soak t s | req/s | p50 ms | p99 ms | RSS MB | errors |\n|---:|---:|---:|---:|---:|---:|\n");
        for x in &r.soak {
            s.push_str(&format!(
                "| {} | {:.0} | {:.3} | {:.3} | {:.1} | {} |\n",
                x.t_s, x.rps, x.p50_ms, x.p99_ms, x.rss_mb, x.errors
            ));
        }
    }
    s.push_str("\n| target (issue 9) | measured | |\n|---|---|---|\n");
    for c in &r.checks {
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            c.target,
            c.measured,
            if c.pass { "PASS" } else { "FAIL" }
        ));
    }
    s
}
