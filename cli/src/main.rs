//! The `warden` command line: `run` a tree from a manifest, `check` manifests and
//! plugins, show a manifest's `tree`, print the manifest's JSON `schema`, inspect and
//! edit children's durable `state`.

mod cache;
mod control;
mod ctl;
mod http;
mod line;
mod logs;
mod metrics;
mod new;
mod printer;
mod render;
mod scenario;
mod socket;
mod state_cli;
mod traces;
mod watch;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use warden::runtime::Host;
use warden::sandbox::{Engine, Plugin};
use warden::supervisor::{ChildStart, PluginStart, SupervisorSpec};

/// A WebAssembly plugin host with supervised sandboxes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Starts the tree a manifest describes; prints one JSON event per line on stdout
    /// and reads control commands as JSON lines on stdin. Exits 0 after a clean
    /// shutdown (the `shutdown` command, SIGINT or SIGTERM), 1 when the root
    /// supervisor gave up or the tree could not start, 2 for a bad manifest or a
    /// plugin it names that cannot be loaded.
    Run {
        /// The manifest (TOML).
        manifest: PathBuf,
        /// How events are printed: `pretty` (the default on a terminal) or `jsonl`
        /// (the default otherwise: one JSON object per line, the CLI contract).
        #[arg(long, value_enum)]
        events: Option<EventFormat>,
        /// Where children's durable state is kept. Default: the manifest's `data_dir`,
        /// else a directory of this manifest's own under $XDG_STATE_HOME/warden (or
        /// ~/.local/state/warden). One host at a time may use a data dir.
        #[arg(long, conflicts_with = "in_memory")]
        data_dir: Option<PathBuf>,
        /// Keep children's state in memory only: it survives restarts of children, not
        /// of this process.
        #[arg(long)]
        in_memory: bool,
        /// The control socket (Unix, owner only): the commands of stdin, for several
        /// clients at once (`warden ctl`). Default: `control.sock` in the run's state
        /// directory; its path is printed at start.
        #[arg(long)]
        control: Option<PathBuf>,
        /// Upgrades the children running a plugin file when its content changes (a new
        /// build written over it or renamed onto it): the plugin author's edit-run loop.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        web: WebArgs,
        #[command(flatten)]
        traces: TraceArgs,
        #[command(flatten)]
        cache: cache::CacheArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Talks to a running tree through its control socket.
    Ctl(ctl::Args),
    /// Creates a plugin project that builds and passes its own test out of the box.
    New(new::Args),
    /// Runs a plugin project's scenarios (TOML files of control commands and the
    /// replies and events they should bring) against the tree of its manifest. Exits 0
    /// when all pass, 1 when one fails, 2 for a bad manifest or scenario.
    Test(scenario::Args),
    /// Runs a member node of a cluster: it hosts the children other nodes' supervisors
    /// place on it (`node = "NAME"` in their manifests) and prints their events, until
    /// SIGINT or SIGTERM. Exits 1 when it cannot join (NATS unreachable, or the name
    /// taken by a live node).
    Node {
        /// This node's name, unique in the cluster.
        #[arg(long)]
        name: String,
        /// The NATS server (with JetStream, 2.11 or later), e.g. nats://127.0.0.1:4222.
        #[arg(long)]
        nats: String,
        /// How long the node's membership lives unless renewed: how fast its death is
        /// noticed. Whole seconds.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
        node_ttl: std::time::Duration,
        /// How events are printed, as for `run`.
        #[arg(long, value_enum)]
        events: Option<EventFormat>,
        /// The largest memory a child placed here may have (the instance pool's memory
        /// size): a child whose limit is larger fails to start here, saying so.
        #[arg(long, value_parser = warden::manifest::size, default_value = "256MiB")]
        max_memory: usize,
        /// How many children placed here may run at once.
        #[arg(long, default_value_t = 1000)]
        max_instances: usize,
        #[command(flatten)]
        traces: TraceArgs,
        #[command(flatten)]
        cache: cache::CacheArgs,
    },
    /// Inspects and edits children's durable state while no host uses it.
    State(state_cli::Args),
    /// Prints the tree a manifest defines, with every node's settings.
    Tree {
        /// The manifest (TOML).
        manifest: PathBuf,
    },
    /// Prints the JSON schema of the manifest format (for editors and validators).
    Schema,
    /// Checks manifests (and every plugin they name) or plugin files, without running
    /// anything; lists every problem. Exits 0 when all are fine, 2 otherwise.
    Check {
        /// Manifests (.toml) or plugin components (.wasm).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        cache: cache::CacheArgs,
    },
}

/// Where traces go.
#[derive(Debug, Default, clap::Args)]
struct TraceArgs {
    /// Exports traces of starts, restarts and calls over OTLP/HTTP to this collector,
    /// e.g. http://127.0.0.1:4318 (default: $OTEL_EXPORTER_OTLP_ENDPOINT, else none).
    #[arg(long, value_name = "URL")]
    otlp: Option<String>,
}

impl Command {
    /// The `--otlp` of the commands that run children.
    fn otlp(&self) -> Option<&str> {
        match self {
            Command::Run { traces, .. } | Command::Node { traces, .. } => traces.otlp.as_deref(),
            _ => None,
        }
    }
}

/// What `run` serves over HTTP.
#[derive(Debug, Default, clap::Args)]
struct WebArgs {
    /// Serves Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9090.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Serves the live view of the tree (and /metrics) at http://ADDR/, e.g.
    /// 127.0.0.1:8080; its admin actions need the token printed at start.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
}

/// The listeners `run` serves on, bound before the tree starts.
#[derive(Debug, Default)]
struct Listeners {
    socket: Option<socket::Socket>,
    metrics: Option<tokio::net::TcpListener>,
    view: Option<(tokio::net::TcpListener, String)>,
    /// For `--watch`: the plugin files and who runs them.
    watched: Option<std::collections::BTreeMap<PathBuf, watch::Users>>,
}

impl WebArgs {
    /// Binds what was asked for, saying where on stderr.
    async fn bind(
        &self,
    ) -> Result<(Option<tokio::net::TcpListener>, Option<(tokio::net::TcpListener, String)>), String>
    {
        async fn listen(addr: &str, flag: &str) -> Result<tokio::net::TcpListener, String> {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (--{flag}): {e}"))
        }
        let local =
            |l: &tokio::net::TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let metrics = match &self.metrics {
            Some(addr) => {
                let listener = listen(addr, "metrics").await?;
                eprintln!("warden: metrics at http://{}/metrics", local(&listener));
                Some(listener)
            }
            None => None,
        };
        let view = match &self.http {
            Some(addr) => {
                let listener = listen(addr, "http").await?;
                let token =
                    http::token().map_err(|e| format!("cannot make an admin token: {e}"))?;
                eprintln!("warden: live view at http://{}/?token={token}", local(&listener));
                Some((listener, token))
            }
            None => None,
        };
        Ok((metrics, view))
    }
}

/// Joining a cluster from `run`.
#[derive(Debug, clap::Args)]
struct ClusterArgs {
    /// Runs the tree's root as node NAME of a cluster (needs --nats): its children may
    /// then be placed on other nodes (`node`/`nodes` in the manifest).
    #[arg(long, requires = "nats")]
    node: Option<String>,
    /// The cluster's NATS server (with JetStream, 2.11 or later).
    #[arg(long, requires = "node")]
    nats: Option<String>,
    /// How long the node's membership lives unless renewed. Whole seconds.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    node_ttl: std::time::Duration,
}

impl ClusterArgs {
    fn config(&self) -> Option<warden::cluster::ClusterConfig> {
        let (node, nats) = (self.node.as_ref()?, self.nats.as_ref()?);
        Some(warden::cluster::ClusterConfig::new(node, nats).ttl(self.node_ttl))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum EventFormat {
    /// One JSON object per line (the CLI contract).
    Jsonl,
    /// A readable live log, coloured on a terminal.
    Pretty,
}

fn main() -> Result<ExitCode> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let cli = Cli::parse();
    // Logs go to stderr through a bounded queue and a thread of their own: a stderr
    // nobody reads loses log lines (counted), it never blocks the runtime.
    let logs = logs::Logs::start()?;
    // What guests write is in the event stream (`log` events); on stderr only when
    // RUST_LOG asks for it.
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => tracing_subscriber::EnvFilter::new(filter),
        _ => tracing_subscriber::EnvFilter::new("error,warden::guest=off"),
    };
    let stderr = tracing_subscriber::fmt::layer().with_writer(logs.clone()).with_filter(filter);
    let (spans, traces) = match traces::endpoint(cli.command.otlp()) {
        Some(endpoint) => match traces::layer(&endpoint) {
            Ok((layer, traces)) => (Some(layer), Some(traces)),
            Err(e) => {
                eprintln!("warden: {e}");
                return Ok(ExitCode::from(1));
            }
        },
        None => (None, None),
    };
    tracing_subscriber::registry().with(stderr).with(spans).init();
    let code = command(cli.command);
    if let Some(traces) = traces {
        traces.finish();
    }
    logs.flush(std::time::Duration::from_secs(1));
    code
}

fn command(command: Command) -> Result<ExitCode> {
    match command {
        Command::Check { files, cache } => check(&files, cache.dir()),
        Command::Tree { manifest } => match warden::manifest::load(&manifest) {
            Ok(spec) => {
                print!("{}", render::tree(&spec));
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&warden::manifest::json_schema())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::State(args) => state_cli::main(args),
        Command::Ctl(args) => Ok(ctl::main(args)),
        Command::New(args) => Ok(new::main(args)),
        Command::Test(args) => Ok(scenario::main(args)),
        Command::Node {
            name, nats, node_ttl, events, max_memory, max_instances, cache, ..
        } => {
            let format = printer_format(events);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let config = warden::cluster::ClusterConfig::new(name, nats).ttl(node_ttl);
            // Any child may be placed here: fuel is on for those with a fuel limit.
            let engine = warden::sandbox::EngineConfig {
                fuel: true,
                max_memory_bytes: max_memory,
                max_instances,
                cache_dir: cache.dir(),
                ..Default::default()
            };
            let code = runtime.block_on(node(config, engine, format));
            runtime.shutdown_background();
            code
        }
        Command::Run {
            manifest,
            events,
            data_dir,
            in_memory,
            control,
            watch,
            web,
            cache,
            cluster,
            ..
        } => {
            let format = printer_format(events);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let store = match (in_memory, data_dir) {
                (true, _) => Store::Memory,
                (false, Some(dir)) => Store::Dir(dir),
                (false, None) => Store::Default,
            };
            let code = runtime.block_on(run(
                &manifest,
                format,
                store,
                (control, watch, web),
                cache.dir(),
                cluster.config(),
            ));
            // Tokio's stdin reader blocks in read(2) on a thread of its own; dropping the
            // runtime would wait for it until stdin closes.
            runtime.shutdown_background();
            code
        }
    }
}

/// Where `run` keeps children's state.
enum Store {
    Memory,
    Dir(PathBuf),
    /// The manifest's `data_dir`, else the default for the manifest.
    Default,
}

/// How events are printed: `events`, else pretty on a terminal and JSON lines
/// otherwise.
fn printer_format(events: Option<EventFormat>) -> printer::Format {
    let terminal = std::io::stdout().is_terminal();
    match events.unwrap_or(if terminal { EventFormat::Pretty } else { EventFormat::Jsonl }) {
        EventFormat::Jsonl => printer::Format::Jsonl,
        EventFormat::Pretty => printer::Format::Pretty(render::Style::new(terminal)),
    }
}

/// `warden node`: joins, hosts what is placed here and prints its events until a
/// signal; then stops what it hosts and leaves.
async fn node(
    config: warden::cluster::ClusterConfig,
    engine: warden::sandbox::EngineConfig,
    format: printer::Format,
) -> Result<ExitCode> {
    let host = Host::builder().engine(engine).cluster(config).build()?;
    line::anchor(host.clock_us());
    let (_replies, replies_rx) = tokio::sync::mpsc::unbounded_channel();
    let events = host.subscribe();
    let since = host.last_event_seq();
    let runtime = tokio::runtime::Handle::current();
    let printer =
        printer::Printer::start(runtime, events, since, host.clock_us(), replies_rx, format)?;
    let mut signals = Signals::listen();
    let code = match host.join().await {
        Err(e) => {
            eprintln!("warden node: {e}");
            ExitCode::from(1)
        }
        Ok(()) => {
            signals.recv().await;
            host.leave().await;
            ExitCode::SUCCESS
        }
    };
    drop(host);
    printer.finish(SETTLE).await;
    Ok(code)
}

async fn run(
    manifest: &Path,
    format: printer::Format,
    store: Store,
    (control, watch, web): (Option<PathBuf>, bool, WebArgs),
    cache_dir: Option<PathBuf>,
    cluster: Option<warden::cluster::ClusterConfig>,
) -> Result<ExitCode> {
    let (mut spec, settings) = match warden::manifest::load_with_settings(manifest) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut engine = engine_for(&spec);
    engine.cache_dir = cache_dir;
    let state_dir = match &store {
        Store::Dir(dir) => dir.clone(),
        Store::Memory | Store::Default => {
            settings.data_dir.clone().unwrap_or_else(|| warden::state::default_data_dir(manifest))
        }
    };
    let host = match open_host(manifest, engine, settings, store, cluster) {
        Ok(host) => host,
        Err(e) => {
            eprintln!("warden: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    line::anchor(host.clock_us());
    let socket = match control {
        Some(path) => match socket::Socket::bind(&path) {
            Ok(socket) => Some(socket),
            Err(e) => {
                eprintln!("warden: {e}");
                return Ok(ExitCode::from(1));
            }
        },
        // Nobody asked for this one: where it cannot be (another run of this manifest
        // holds it, say), the run goes on without it.
        None => match socket::Socket::bind(&socket::default_path(&state_dir)) {
            Ok(socket) => Some(socket),
            Err(e) => {
                eprintln!("warden: {e}; no control socket (choose one with --control)");
                None
            }
        },
    };
    if let Some(socket) = &socket {
        eprintln!("warden: control socket at {}", socket.path().display());
    }
    let (metrics, view) = match web.bind().await {
        Ok(bound) => bound,
        Err(e) => {
            eprintln!("warden: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let watched = watch.then(|| watch::files(&spec));
    let listeners = Listeners { socket, metrics, view, watched };
    let problems = compile_with_progress(&host, &mut spec);
    if !problems.is_empty() {
        for problem in problems {
            eprintln!("{}: {problem}", manifest.display());
        }
        return Ok(ExitCode::from(2));
    }
    let (replies, replies_rx) = tokio::sync::mpsc::unbounded_channel();
    let events = host.subscribe();
    let since = host.last_event_seq();
    let runtime = tokio::runtime::Handle::current();
    let clock = host.clock_us();
    let printer = printer::Printer::start(runtime, events, since, clock, replies_rx, format)?;
    let signals = Signals::listen();
    let code = match host.start(spec).await {
        Err(e) => {
            drop(replies); // no command will be answered: the printer may end
            eprintln!("{}: {e}", manifest.display());
            ExitCode::from(1)
        }
        Ok(()) => {
            let base = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
            serve(&host, base, replies, listeners, signals).await
        }
    };
    drop(host);
    // The printer ends when the event stream closes with the host; stdout may be a
    // pipe nobody reads, so the wait is bounded.
    printer.finish(SETTLE).await;
    Ok(code)
}

/// The host for `run`: its engine sized for the tree, its state where `store` says.
fn open_host(
    manifest: &Path,
    engine: warden::sandbox::EngineConfig,
    settings: warden::manifest::Settings,
    store: Store,
    cluster: Option<warden::cluster::ClusterConfig>,
) -> Result<Host, warden::runtime::HostError> {
    let mut builder = Host::builder().engine(engine);
    if let Some(cluster) = cluster {
        builder = builder.cluster(cluster);
    }
    match store {
        Store::Memory => builder.build(),
        Store::Dir(dir) => builder.data_dir(dir).build(),
        Store::Default => match settings.data_dir {
            Some(dir) => builder.data_dir(dir).build(),
            None => match warden::state::DiskStore::open(warden::state::default_data_dir(manifest))
            {
                Ok(store) => builder.state(std::sync::Arc::new(store)).build(),
                // Nobody chose this place: where it cannot be created (no writable
                // home, say) the run goes on, and says its state will not last.
                Err(warden::state::OpenError::Io { path, source }) => {
                    eprintln!(
                        "warden: cannot use the default data dir ({}: {source}); state is kept \
                         in memory for this run (choose a place with --data-dir)",
                        path.display()
                    );
                    builder.build()
                }
                Err(e) => Err(e.into()),
            },
        },
    }
}

/// Serves control commands until the tree ends, a `shutdown` command, or a signal;
/// then lets the commands still running answer, and answers the `shutdown`. The
/// run's exit code.
async fn serve(
    host: &Host,
    base: PathBuf,
    replies: tokio::sync::mpsc::UnboundedSender<control::Reply>,
    listeners: Listeners,
    mut signals: Signals,
) -> ExitCode {
    let (shutdown_tx, mut shutdown_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_reading, stop) = tokio::sync::watch::channel(false);
    let Listeners { socket, metrics, view, watched } = listeners;
    let sessions = socket.map(|socket| {
        let serve =
            socket.serve(host.clone(), base.clone(), shutdown_tx.clone(), stop.clone(), SETTLE);
        tokio::spawn(serve)
    });
    let mut web = tokio::task::JoinSet::new();
    if let Some(listener) = metrics {
        web.spawn(http::serve_metrics(listener, host.clone(), stop.clone()));
    }
    if let Some((listener, token)) = view {
        web.spawn(http::serve_view(listener, host.clone(), base.clone(), token, stop.clone()));
    }
    if let Some(files) = watched {
        web.spawn(watch::watch(host.clone(), files, stop.clone()));
    }
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let session = control::Session { replies: replies.clone(), subscribe: None };
    let commands =
        tokio::spawn(control::serve(host.clone(), base, stdin, session, shutdown_tx, stop));
    let (code, asked) = tokio::select! {
        reason = host.wait() => {
            // Gave up, or ended for any reason but a clean stop (a host panic).
            let failed = host.root_gave_up() || !reason.is_normal();
            (if failed { ExitCode::from(1) } else { ExitCode::SUCCESS }, None)
        }
        Some(asked) = shutdown_rx.recv() => {
            host.shutdown().await;
            (ExitCode::SUCCESS, Some(asked))
        }
        () = signals.recv() => {
            host.shutdown().await;
            (ExitCode::SUCCESS, None)
        }
    };
    // Every `shutdown` asked is answered now that the tree has stopped: the one that
    // stopped it, and those from any session meanwhile or from now on (until every
    // session has ended and the channel closes).
    let _ = stop_reading.send(true);
    if let Some((id, replies)) = asked {
        let _ = replies.send(control::Reply::new(host, id, Ok(serde_json::Value::Null)));
    }
    let answering = host.clone();
    tokio::spawn(async move {
        while let Some((id, replies)) = shutdown_rx.recv().await {
            let _ = replies.send(control::Reply::new(&answering, id, Ok(serde_json::Value::Null)));
        }
    });
    // The commands still running get their answers: the tree is gone, so they end
    // quickly (a call to a stopped child is answered at once).
    if let Ok(Ok(mut running)) = tokio::time::timeout(SETTLE, commands).await {
        let all = async { while running.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(SETTLE, all).await;
    }
    if let Some(sessions) = sessions {
        // Each session answers what it was asked, within SETTLE; the socket's file
        // goes with it.
        let _ = tokio::time::timeout(SETTLE * 2, sessions).await;
    }
    // The live view's event streams end with the tree; a client that does not read
    // is not waited for long.
    let _ = tokio::time::timeout(SETTLE, async { while web.join_next().await.is_some() {} }).await;
    code
}

/// How long the end of a run waits for commands still running and for the printer.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// The engine a tree needs: fuel only when a child has a fuel limit (fuel costs every
/// guest a little), and a pool whose memories are as large as the largest limit.
fn engine_for(spec: &SupervisorSpec) -> warden::sandbox::EngineConfig {
    fn walk(spec: &SupervisorSpec, engine: &mut warden::sandbox::EngineConfig) {
        for child in &spec.children {
            match &child.start {
                ChildStart::Plugin(start) => {
                    engine.fuel |= start.limits.fuel_per_call.is_some();
                    let memory = start.limits.max_memory_bytes;
                    engine.max_memory_bytes = engine.max_memory_bytes.max(memory);
                }
                ChildStart::Supervisor(sub) => walk(sub, engine),
            }
        }
    }
    let mut engine = warden::sandbox::EngineConfig::default();
    walk(spec, &mut engine);
    engine
}

/// Compiles every plugin the tree names before it starts, with a progress bar when
/// stderr is a terminal (a first start compiles; later ones find the compiled code in
/// the compile cache), and makes each child start from its loaded plugin, so nothing
/// is compiled twice. Returns every plugin that cannot be loaded, with the child
/// that names it.
fn compile_with_progress(host: &Host, spec: &mut SupervisorSpec) -> Vec<String> {
    let mut children = plugins(spec);
    let mut files: Vec<&Path> = children.iter().filter_map(|(_, s)| s.plugin.file()).collect();
    files.sort();
    files.dedup();
    let bar = progress_bar(files.len());
    let mut problems = Vec::new();
    let mut loaded: Vec<(PathBuf, Option<Plugin>)> = Vec::new();
    for (place, start) in &mut children {
        let Some(file) = start.plugin.file().map(Path::to_owned) else { continue };
        let plugin = match loaded.iter().find(|(f, _)| *f == file) {
            Some((_, plugin)) => plugin.clone(),
            None => {
                bar.set_message(file.display().to_string());
                let plugin = match host.load(&file) {
                    Ok(plugin) => Some(plugin),
                    Err(e) => {
                        problems.push(format!("{place}: {e}"));
                        None
                    }
                };
                bar.inc(1);
                loaded.push((file, plugin.clone()));
                plugin
            }
        };
        if let Some(plugin) = plugin {
            start.plugin = plugin.into();
        }
    }
    bar.finish_and_clear();
    problems
}

/// A progress bar over `len` plugins on a terminal; hidden otherwise.
fn progress_bar(len: usize) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} compiling {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// Every plugin child of the tree, with its place (`supervisor root, child "a"`).
fn plugins(spec: &mut SupervisorSpec) -> Vec<(String, &mut PluginStart)> {
    fn walk<'a>(
        path: &str,
        spec: &'a mut SupervisorSpec,
        out: &mut Vec<(String, &'a mut PluginStart)>,
    ) {
        for child in &mut spec.children {
            match &mut child.start {
                ChildStart::Plugin(p) => {
                    out.push((format!("supervisor {path}, child {:?}", child.id), &mut **p));
                }
                ChildStart::Supervisor(sub) => walk(&format!("{path}/{}", child.id), sub, out),
            }
        }
    }
    let mut out = Vec::new();
    walk("root", spec, &mut out);
    out
}

/// SIGINT and SIGTERM, listened for from its creation on: made before the tree
/// starts, a signal that comes as the first children start is not the default
/// action's (ending the process at once) but a shutdown in order.
struct Signals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn listen() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    /// The next SIGINT or SIGTERM.
    async fn recv(&mut self) {
        async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = next(&mut self.interrupt) => {}
            () = next(&mut self.terminate) => {}
        }
    }
}

fn check(files: &[PathBuf], cache_dir: Option<PathBuf>) -> Result<ExitCode> {
    let config = warden::sandbox::EngineConfig { cache_dir, ..Default::default() };
    let engine = Engine::with_config(config)?;
    let mut failed = 0;
    for path in files {
        let before = engine.compile_cache_stats();
        let problems = if path.extension().is_some_and(|e| e == "toml") {
            check_manifest(&engine, path)
        } else {
            match engine.load_file(path) {
                Ok(plugin) => {
                    println!("ok    {} (sha256 {})", path.display(), &plugin.hash()[..16]);
                    continue;
                }
                Err(e) => vec![e.to_string()],
            }
        };
        if problems.is_empty() {
            println!("ok    {}{}", path.display(), compiled(&engine, before));
        } else {
            failed += 1;
            for problem in problems {
                println!("error {problem}");
            }
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// What the compile cache did since `before`, e.g. ` (compiled 1, 2 from the cache)`.
fn compiled(engine: &Engine, before: Option<(usize, usize)>) -> String {
    match (before, engine.compile_cache_stats()) {
        (Some((hits_before, misses_before)), Some((hits, misses))) => {
            let (compiled, cached) = (misses - misses_before, hits - hits_before);
            format!(" (compiled {compiled}, {cached} from the cache)")
        }
        _ => String::new(),
    }
}

/// Every problem of a manifest: its own (with their places) and those of every plugin
/// it names that exists (loaded: a component, the right exports, known imports).
fn check_manifest(engine: &Engine, path: &Path) -> Vec<String> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return vec![format!("{file}: cannot read: {e}")],
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut problems = match warden::manifest::parse(&file, &text, base) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(|p| format!("{file}: {p}")).collect(),
    };
    let mut loaded: Vec<(PathBuf, Option<String>)> = Vec::new();
    for (place, plugin) in warden::manifest::plugin_files(&text, base) {
        let error = match loaded.iter().find(|(p, _)| *p == plugin) {
            Some((_, error)) => error.clone(),
            None => {
                let error = engine.load_file(&plugin).err().map(|e| e.to_string());
                loaded.push((plugin, error.clone()));
                error
            }
        };
        if let Some(error) = error {
            problems.push(format!("{file}: {place}: {error}"));
        }
    }
    problems
}
