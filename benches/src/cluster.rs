//! Several nodes on a real NATS server on loopback (`$NATS_SERVER_BIN`, or the one
//! `.ci/run` installs in `target/nats`): a call to a child on another node beside a
//! bare `async-nats` request of the same payload, a restart on another node beside
//! one here, and the loss of a node of 100 children.

use crate::{Scenario, micros, scenario};
use anyhow::{Context as _, Result};
use futures_util::StreamExt as _;
use std::time::{Duration, Instant};
use warden::cluster::ClusterConfig;
use warden::events::Event;
use warden::runtime::Host;
use warden::supervisor::{ChildSpec, PluginStart, Strategy, SupervisorSpec};
use warden_tests::nats::Nats;

/// A host that is node `name` of the cluster on `nats`.
async fn node(name: &str, nats: &Nats, ttl: Duration) -> Result<Host> {
    let cluster = ClusterConfig::new(name, &nats.url).ttl(ttl);
    let host = Host::builder().cluster(cluster).build()?;
    host.join().await?;
    Ok(host)
}

fn chaos(id: &str) -> ChildSpec {
    ChildSpec::plugin(id, PluginStart::new(warden_tests::CHAOS))
}

/// A tree that never gives up, on `host`.
async fn start(host: &Host, children: Vec<ChildSpec>) -> Result<()> {
    let mut spec = SupervisorSpec::new(Strategy::OneForOne, children);
    spec.intensity = u32::MAX;
    spec.period = Duration::from_millis(1);
    host.start(spec).await?;
    Ok(())
}

/// A 64-byte call from the application on node a to a child on node b, beside a bare
/// request/reply of 64 bytes through the same server (a responder in this process).
pub(crate) async fn remote_call(samples: usize) -> Result<Scenario> {
    let nats = Nats::try_start().map_err(anyhow::Error::msg)?;
    let b = node("b", &nats, Duration::from_secs(3)).await?;
    let a = node("a", &nats, Duration::from_secs(3)).await?;
    start(&a, vec![chaos("echo").node("b")]).await?;
    let client = async_nats::connect(nats.url.as_str()).await?;
    let mut responder = client.subscribe("bench.echo").await?;
    let answering = client.clone();
    let server = tokio::spawn(async move {
        while let Some(request) = responder.next().await {
            if let Some(reply) = request.reply {
                let _ = answering.publish(reply, request.payload).await;
            }
        }
    });
    let payload = format!("echo:{}", "x".repeat(59)).into_bytes();
    let (mut warden, mut bare) = (Vec::new(), Vec::new());
    for i in 0..samples + samples / 10 {
        let t = Instant::now();
        let answer = a.call("root/echo", payload.clone(), Duration::from_secs(5)).await?;
        let w = t.elapsed();
        anyhow::ensure!(answer.len() == 59, "the echo answered {} bytes", answer.len());
        let t = Instant::now();
        let reply = client.request("bench.echo", payload.clone().into()).await?;
        let r = t.elapsed();
        anyhow::ensure!(reply.payload.len() == 64);
        if i >= samples / 10 {
            warden.push(micros(w));
            bare.push(micros(r));
        }
    }
    server.abort();
    a.shutdown().await;
    a.leave().await;
    b.leave().await;
    Ok(scenario(
        "remote_call_64B",
        "us",
        warden,
        "bare async-nats request/reply of 64 B, same server",
        bare,
    ))
}

/// A child on node b crashes: from the crashing call to the first answer of its next
/// incarnation, beside the same for a child where its supervisor runs.
pub(crate) async fn remote_restart(samples: usize) -> Result<Scenario> {
    let nats = Nats::try_start().map_err(anyhow::Error::msg)?;
    let b = node("b", &nats, Duration::from_secs(3)).await?;
    let a = node("a", &nats, Duration::from_secs(3)).await?;
    start(&a, vec![chaos("there").node("b"), chaos("here")]).await?;
    let (mut remote, mut local) = (Vec::new(), Vec::new());
    for i in 0..samples + samples / 10 {
        let r = crash_until_answered(&a, "root/there").await?;
        let l = crash_until_answered(&a, "root/here").await?;
        if i >= samples / 10 {
            remote.push(micros(r));
            local.push(micros(l));
        }
    }
    a.shutdown().await;
    a.leave().await;
    b.leave().await;
    Ok(scenario(
        "remote_restart",
        "us",
        remote,
        "the same restart of a child on the supervisor's node",
        local,
    ))
}

async fn crash_until_answered(host: &Host, path: &str) -> Result<Duration> {
    let t = Instant::now();
    let crashed = host.call(path, b"trap".to_vec(), Duration::from_secs(5)).await;
    anyhow::ensure!(crashed.is_err(), "the trap was answered");
    loop {
        if host.call(path, b"echo:up".to_vec(), Duration::from_secs(5)).await.is_ok() {
            return Ok(t.elapsed());
        }
    }
}

/// Node b, a `warden node` process with 100 children, is killed (SIGKILL): from the
/// kill to the last of them started again on node c, against the node TTL.
pub(crate) async fn node_loss(rounds: usize) -> Result<Scenario> {
    let ttl = Duration::from_secs(3);
    let warden = std::env::current_exe()?.with_file_name("warden");
    anyhow::ensure!(
        warden.exists(),
        "node_loss runs `warden node`: build it first (cargo build --release -p warden-host-cli)"
    );
    let nats = Nats::try_start().map_err(anyhow::Error::msg)?;
    let member = |name: &str| {
        std::process::Command::new(&warden)
            .args(["node", "--name", name, "--nats", &nats.url, "--events", "jsonl"])
            .args(["--node-ttl", &format!("{}s", ttl.as_secs())])
            .stdout(std::process::Stdio::null())
            .spawn()
    };
    let mut c = member("c")?;
    let a = node("a", &nats, ttl).await?;
    let mut times = Vec::new();
    for _ in 0..rounds {
        let mut events = a.subscribe();
        let mut b = member("b")?;
        wait_up(&mut events, "b").await?;
        let children = (0..100).map(|i| chaos(&format!("w{i}")).nodes(["b", "c"])).collect();
        start(&a, children).await?;
        let mut on_b = 0;
        while on_b < 100 {
            if started_on(&mut events, "b").await? {
                on_b += 1;
            }
        }
        let killed = Instant::now();
        b.kill()?;
        let _ = b.wait();
        let mut on_c = 0;
        while on_c < 100 {
            if started_on(&mut events, "c").await? {
                on_c += 1;
            }
        }
        times.push(killed.elapsed().as_secs_f64() * 1e3);
        a.shutdown().await;
    }
    a.leave().await;
    let _ = c.kill();
    let _ = c.wait();
    times.sort_by(f64::total_cmp);
    let p50 = times[times.len() / 2];
    Ok(Scenario {
        name: "node_loss_100",
        unit: "ms",
        samples: times.len(),
        warden_value: Some(p50),
        note: Some(format!(
            "SIGKILL of a node of 100 children to all 100 started on a survivor, median of {} \
             (node TTL {} ms): {times:.0?}",
            times.len(),
            ttl.as_millis()
        )),
        ..Scenario::default()
    })
}

/// Whether the next event is a child started on `node`.
async fn started_on(events: &mut warden::Events, node: &str) -> Result<bool> {
    let received = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .with_context(|| format!("no event within 30 s, waiting for starts on {node}"))?
        .context("the stream ended")?;
    Ok(matches!(
        received.event().map(|r| r.event),
        Some(Event::ChildStarted { node: Some(n), .. }) if n == node
    ))
}

/// Waits for `node_up` of `node` on `events`.
async fn wait_up(events: &mut warden::Events, node: &str) -> Result<()> {
    loop {
        let received = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .with_context(|| format!("node {node} did not join within 30 s"))?
            .context("the stream ended")?;
        if matches!(received.event().map(|r| r.event), Some(Event::NodeUp { node: n }) if n == node)
        {
            return Ok(());
        }
    }
}
