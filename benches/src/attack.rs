//! `call_under_attack`: a child's call latency while a hostile sibling attacks the host
//! through each door it has, against the same calls with the sibling quiet, in one run.
//!
//! Rounds alternate: a calm phase, then an attack phase in which one task keeps asking
//! the attacker for its attack (CPU loops killed at their deadline, memory bombs, stack
//! overflows, log and stdout floods, timer and send floods, state writes, calls in a
//! loop) while another measures calls to the victim, an echo child of its own. The
//! attacker is one child: the figure is its siblings' p99, within 1.5× of calm.

use crate::{Scenario, micros, never_giving_up, scenario};
use anyhow::Result;
use std::time::{Duration, Instant};
use warden::messaging::Targets;
use warden::runtime::Host;
use warden::sandbox::MessageError;
use warden::supervisor::{ChildSpec, PluginStart, Strategy};

/// Each attack: the child asked, and what it is asked, again and again.
const ATTACKS: [(&str, &str, &str); 10] = [
    ("cpu", "root/chaos", "loop"),
    ("memory", "root/chaos", "oom"),
    ("stack", "root/chaos", "stack"),
    ("log", "root/hostile", "log:1000:200"),
    ("stdout", "root/hostile", "stdout:1048576"),
    ("timers", "root/hostile", "timers:1000:1024:1"),
    ("sends", "root/hostile", "sends:1024:16384:root/hostile"),
    ("state", "root/chaos", "state:fill:64:16384"),
    ("calls", "root/chaos", "call:root/sink:x"),
    ("payloads", "root/hostile", "sends:16:1048576:root/sink"),
];

pub(crate) async fn call_under_attack(per_phase: usize) -> Result<Scenario> {
    let mut hostile = PluginStart::new(warden_tests::HOSTILE);
    hostile.mailbox.targets = Targets::any();
    let mut chaos = PluginStart::new(warden_tests::CHAOS);
    chaos.mailbox.targets = Targets::any();
    chaos.limits.call_deadline = Some(Duration::from_millis(50));
    chaos.limits.max_memory_bytes = 16 << 20;
    let children = vec![
        ChildSpec::plugin("victim", PluginStart::new(warden_tests::ECHO)),
        ChildSpec::plugin("hostile", hostile),
        ChildSpec::plugin("chaos", chaos),
        ChildSpec::plugin("sink", PluginStart::new(warden_tests::ECHO)),
    ];
    let (host, _events) = never_giving_up(Strategy::OneForOne, children).await?;
    let (mut calm, mut attacked) = (Vec::new(), Vec::new());
    let mut each = serde_json::Map::new();
    measure(&host, per_phase / 10).await?; // warm-up
    for (name, attacker, attack) in ATTACKS {
        let mut before = measure(&host, per_phase).await?;
        let attacking = {
            let host = host.clone();
            tokio::spawn(async move {
                loop {
                    // Refused at once (its mailbox full), a call does not yield: wait a
                    // moment, or this loop would be an attacker of its own.
                    if host.call(attacker, attack.into(), Duration::from_secs(5)).await.is_err() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            })
        };
        let mut under = measure(&host, per_phase).await?;
        attacking.abort();
        quiet(&host, attacker).await?;
        under.sort_by(f64::total_cmp);
        before.sort_by(f64::total_cmp);
        let (p99, calm_p99) = (crate::percentile(&under, 0.99), crate::percentile(&before, 0.99));
        each.insert(
            name.into(),
            serde_json::json!({
                "p50_us": crate::percentile(&under, 0.5),
                "p99_us": p99,
                "calm_p99_us": calm_p99,
                "ratio_p99": p99 / calm_p99,
            }),
        );
        attacked.extend(under);
        calm.extend(before);
    }
    host.shutdown().await;
    let mut s =
        scenario("call_under_attack", "us", attacked, "the same calls, the attacker quiet", calm);
    s.ratio_p99 = Some(s.warden_p99.unwrap_or(0.0) / s.baseline_p99.unwrap_or(1.0));
    s.details = Some(serde_json::Value::Object(each));
    Ok(s)
}

/// Waits until the attack is over: the attacker's backlog handled (a call queues behind
/// it), the timers it set fired, every message settled, so that the calm phase after it
/// is calm.
async fn quiet(host: &Host, attacker: &str) -> Result<()> {
    let ping = if attacker == "root/chaos" { "echo:quiet" } else { "quiet" };
    while let Err(e) = host.call(attacker, ping.into(), Duration::from_secs(10)).await {
        anyhow::ensure!(e == MessageError::MailboxFull, "{attacker} did not answer: {e}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await; // the last 1 ms timers fire
    tokio::time::timeout(Duration::from_secs(10), host.messages_settled()).await?;
    Ok(())
}

/// `samples` calls of 64 bytes to the victim, one after another, in microseconds.
async fn measure(host: &Host, samples: usize) -> Result<Vec<f64>> {
    let payload = vec![7u8; 64];
    let mut us = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let reply = host.call("root/victim", payload.clone(), Duration::from_secs(5)).await?;
        us.push(micros(t.elapsed()));
        anyhow::ensure!(reply.len() == 64, "the victim answered {} bytes", reply.len());
    }
    Ok(us)
}
