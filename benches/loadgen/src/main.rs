//! loadgen: a closed-loop etcd v3 load generator, for measuring ketch side
//! by side with etcd.
//!
//! The workloads are the ones etcd's own `tools/benchmark` defines (put,
//! range, txn-put, watch-latency, lease-keepalive), with its flag names.
//! `--clients` client tasks share `--conns` gRPC connections round-robin;
//! each task runs one request at a time until `--total` requests or
//! `--duration` is reached. Every run is bounded in time.
//!
//! Output on stdout: one human line, then one JSON line. stderr carries
//! `loadgen: measure begin` / `loadgen: measure end` around the measured
//! interval (compare.py samples the server's CPU there) and any error.
//! Exit status: 0 on a completed run (request errors are counted, not
//! fatal), 2 when the run could not be done (setup failed, or the server
//! answered UNIMPLEMENTED), 64 on bad flags.

mod measure;
mod workloads;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "etcd v3 load generator (etcd benchmark workloads)"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Args, Clone)]
pub struct Global {
    /// Comma-separated endpoints; connection i goes to endpoint i mod len.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,
    /// Number of gRPC connections (HTTP/2 channels).
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Number of concurrent clients; client i uses connection i mod conns.
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Stop after this many requests (puts, for watch-latency).
    #[arg(long, global = true)]
    pub total: Option<u64>,
    /// Stop after this long ("5s", "500ms", "1m", or seconds). Default 5s.
    #[arg(long, global = true, value_parser = parse_duration, default_value = "5s")]
    pub duration: Duration,
    /// Per-request timeout for unary calls.
    #[arg(long, global = true, value_parser = parse_duration, default_value = "10s")]
    pub request_timeout: Duration,
    /// CA certificate (PEM) to verify the server; turns TLS on.
    #[arg(long, global = true)]
    pub cacert: Option<String>,
    /// Client certificate (PEM), with --key.
    #[arg(long, global = true, requires = "key")]
    pub cert: Option<String>,
    /// Client private key (PEM), with --cert.
    #[arg(long, global = true, requires = "cert")]
    pub key: Option<String>,
    /// Key size in bytes (keys are zero-padded decimal numbers).
    #[arg(long, global = true, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, global = true, default_value_t = 256)]
    pub val_size: usize,
    /// Keys are drawn from [0, key-space-size).
    #[arg(long, global = true, default_value_t = 10_000)]
    pub key_space_size: u64,
    /// Use keys 0, 1, 2, ... (mod key-space-size) instead of random ones.
    #[arg(long, global = true)]
    pub sequential_keys: bool,
    /// Authenticate every connection as this user ("NAME:PASSWORD", as
    /// etcdctl's --user); the token rides on every request.
    #[arg(long, global = true, value_parser = parse_user)]
    pub user: Option<(String, String)>,
    /// Tokio worker threads for the load generator itself.
    #[arg(long, global = true, default_value_t = 2)]
    pub threads: usize,
}

#[derive(Subcommand)]
enum Workload {
    /// Put random (or sequential) keys.
    Put,
    /// Range over one key, or over a prefix of --prefix-keys preloaded keys.
    Range {
        /// l: linearizable (through the leader's read index), s: serializable (local).
        #[arg(long, value_enum, default_value = "l")]
        consistency: Consistency,
        /// 0: get one key; N: preload N keys under one prefix and range the prefix.
        #[arg(long, default_value_t = 0)]
        prefix_keys: u64,
    },
    /// Optimistic update as Kubernetes does it: read the key's mod_revision,
    /// then txn(if mod_revision == rev then put else get), retried on conflict.
    TxnPut,
    /// Latency from the start of a put to each watcher's event.
    WatchLatency {
        /// Watchers on the one key.
        #[arg(long, default_value_t = 100)]
        watchers: usize,
        /// Watch streams the watchers are spread over (default: --clients).
        #[arg(long)]
        streams: Option<usize>,
        /// Puts per second (0: as fast as all watchers receive them).
        #[arg(long, default_value_t = 100)]
        put_rate: u32,
    },
    /// LeaseKeepAlive round trips, one lease and one keepalive stream per client.
    LeaseKeepalive,
    /// Turn auth on for a measured user: root (password --root-password,
    /// holding the root role), a role with READWRITE on --prefix granted to
    /// the user of --user, then AuthEnable. Run once, before the workload.
    EnableAuth {
        /// The key prefix the user's role may read and write.
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value = "root")]
        root_password: String,
    },
    /// Wait until every endpoint answers a linearizable get (a leader exists).
    WaitReady {
        #[arg(long, value_parser = parse_duration, default_value = "30s")]
        timeout: Duration,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Consistency {
    L,
    S,
}

impl Workload {
    fn name(&self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Range { .. } => "range",
            Workload::TxnPut => "txn-put",
            Workload::WatchLatency { .. } => "watch-latency",
            Workload::LeaseKeepalive => "lease-keepalive",
            Workload::EnableAuth { .. } => "enable-auth",
            Workload::WaitReady { .. } => "wait-ready",
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration must be positive: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_user(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((name, password)) if !name.is_empty() => Ok((name.to_owned(), password.to_owned())),
        _ => Err(format!("--user takes NAME:PASSWORD, not {s:?}")),
    }
}

/// Opens `--conns` connections, spread over the endpoints.
async fn connect(g: &Global) -> Result<Vec<Client>, String> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(g.request_timeout);
    if g.cacert.is_some() || g.cert.is_some() {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &g.cacert {
            let pem = std::fs::read(ca).map_err(|e| format!("--cacert {ca}: {e}"))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&g.cert, &g.key) {
            let c = std::fs::read(cert).map_err(|e| format!("--cert {cert}: {e}"))?;
            let k = std::fs::read(key).map_err(|e| format!("--key {key}: {e}"))?;
            tls = tls.identity(Identity::from_pem(c, k));
        }
        opts = opts.with_tls(tls);
    }
    if let Some((name, password)) = &g.user {
        opts = opts.with_user(name.clone(), password.clone());
    }
    let mut conns = Vec::with_capacity(g.conns);
    for i in 0..g.conns {
        let ep = &g.endpoints[i % g.endpoints.len()];
        let c = Client::connect([ep.as_str()], Some(opts.clone()))
            .await
            .map_err(|e| format!("connect {ep}: {}", measure::describe(&e)))?;
        conns.push(c);
    }
    Ok(conns)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let g = &cli.global;
    if g.conns == 0 || g.clients == 0 || g.endpoints.is_empty() || g.key_space_size == 0 {
        eprintln!(
            "loadgen: --conns, --clients, --endpoints and --key-space-size must be non-empty"
        );
        return ExitCode::from(64);
    }
    if (g.key_space_size - 1).to_string().len() > g.key_size {
        eprintln!(
            "loadgen: --key-size {} cannot hold {} distinct decimal keys",
            g.key_size, g.key_space_size
        );
        return ExitCode::from(64);
    }
    let name = cli.workload.name();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(g.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        if let Workload::EnableAuth {
            prefix,
            root_password,
        } = &cli.workload
        {
            // Connected without --user: auth is not on yet.
            let plain = Global {
                user: None,
                ..cli.global.clone()
            };
            let conns = connect(&plain).await?;
            return workloads::enable_auth(&cli.global, conns, prefix, root_password).await;
        }
        let conns = connect(&cli.global).await?;
        let g = cli.global.clone();
        match cli.workload {
            Workload::Put => workloads::put(&g, conns).await,
            Workload::Range {
                consistency,
                prefix_keys,
            } => workloads::range(&g, conns, consistency, prefix_keys).await,
            Workload::TxnPut => workloads::txn_put(&g, conns).await,
            Workload::WatchLatency {
                watchers,
                streams,
                put_rate,
            } => {
                workloads::watch_latency(
                    &g,
                    conns,
                    watchers,
                    streams.unwrap_or(g.clients),
                    put_rate,
                )
                .await
            }
            Workload::LeaseKeepalive => workloads::lease_keepalive(&g, conns).await,
            Workload::WaitReady { timeout } => workloads::wait_ready(&g, conns, timeout).await,
            Workload::EnableAuth { .. } => unreachable!("handled before connecting as the user"),
        }
    });
    // Do not wait for lingering streams (watchers, keepalives) to wind down.
    rt.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(summary) => {
            println!("{}", summary.human());
            println!("{}", summary.json());
            if let Some(e) = summary.fatal() {
                eprintln!("loadgen: {name}: {e}");
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {name}: {e}");
            println!("{}", serde_json::json!({ "workload": name, "error": e }));
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2.5s").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
