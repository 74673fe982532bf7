//! The tree's figures in Prometheus' exposition format (OpenMetrics text), encoded by
//! the Prometheus project's own client from a [`HostReport`] taken at each scrape.
//!
//! Names follow Prometheus' conventions: `warden_` first, the unit last, `_total` on
//! counters (added by the encoder); a child or a supervisor is the `path` label.
//! Counters count since the host started (a child's since its first start: its
//! mailbox and its supervisor's record outlive its incarnations).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::fmt::Error;
use std::sync::Arc;
use warden::messaging::HANDLE_TIME_BOUNDS_US;
use warden::runtime::{ChildReport, HostReport, SupervisorReport};

/// What the `/metrics` answer's `Content-Type` is.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The report as OpenMetrics text.
pub(crate) fn encode(report: &Arc<HostReport>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Figures(Arc::clone(report))));
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

#[derive(Debug)]
struct Figures(Arc<HostReport>);

type Labels = Vec<(&'static str, String)>;

/// One metric family: its name, help and type, and a value per label set.
struct Family<V> {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, V)>,
}

impl<V> Family<V> {
    fn new(name: &'static str, help: &'static str, kind: MetricType) -> Self {
        Self { name, help, kind, samples: Vec::new() }
    }
}

/// A value a family holds.
trait Sample {
    fn encode(&self, encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), Error>;
}

impl Sample for u64 {
    fn encode(&self, encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), Error> {
        ConstCounter::new(*self).encode(encoder)
    }
}

/// A gauge's value: a count, or a measure.
enum Gauge {
    Count(i64),
    Measure(f64),
}

impl Gauge {
    fn count(n: impl TryInto<i64>) -> Self {
        Gauge::Count(n.try_into().unwrap_or(i64::MAX))
    }
}

impl Sample for Gauge {
    fn encode(&self, encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), Error> {
        match self {
            Gauge::Count(n) => ConstGauge::new(*n).encode(encoder),
            Gauge::Measure(x) => ConstGauge::new(*x).encode(encoder),
        }
    }
}

/// A histogram of seconds: per-bucket counts for the bounds, the last for `+Inf`.
struct Histogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl Sample for Histogram {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), Error> {
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum,
            self.count,
            &self.buckets,
            None,
        )
    }
}

impl<V: Sample> Family<V> {
    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), Error> {
        if self.samples.is_empty() {
            return Ok(());
        }
        let mut metric = encoder.encode_descriptor(self.name, self.help, None, self.kind)?;
        match self.samples.as_slice() {
            // A host-wide figure: no labels at all.
            [(labels, value)] if labels.is_empty() => value.encode(metric),
            samples => {
                for (labels, value) in samples {
                    value.encode(metric.encode_family(labels)?)?;
                }
                Ok(())
            }
        }
    }
}

fn path(path: &str) -> Labels {
    vec![("path", label(path))]
}

/// A label's value as the text format needs it: the client writes values as they
/// are, and a child's name may hold a quote or a backslash.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        let report = &self.0;
        let m = &report.messages;
        for (name, help, value) in [
            ("warden_instances", "Plugin instances live now", report.instances as u64),
            (
                "warden_instances_max",
                "The most instances allowed at once",
                report.max_instances as u64,
            ),
            (
                "warden_state_bytes",
                "Bytes of children's durable state (keys and values)",
                report.state_bytes,
            ),
            ("warden_messages_pending", "Messages in mailboxes or being handled", m.pending),
        ] {
            let mut family = Family::new(name, help, MetricType::Gauge);
            family.samples.push((Vec::new(), Gauge::count(value)));
            family.encode(&mut encoder)?;
        }
        for (name, help, value) in [
            ("warden_messages_sent", "Messages offered", m.sent),
            ("warden_messages_rejected", "Messages refused at send", m.rejected),
            ("warden_messages_handled", "Messages handled", m.handled),
            ("warden_messages_failed", "Messages answered with an error instead", m.failed),
            ("warden_messages_dead_letters", "Messages set aside as dead letters", m.dead_letters),
        ] {
            let mut family = Family::new(name, help, MetricType::Counter);
            family.samples.push((Vec::new(), value));
            family.encode(&mut encoder)?;
        }
        let mut tree = Tree::default();
        if let Some(root) = &report.tree {
            tree.supervisor(root);
        }
        tree.encode(&mut encoder)
    }
}

/// The per-supervisor and per-child families, filled by walking the tree.
struct Tree {
    intensity: Family<Gauge>,
    restarts_in_period: Family<Gauge>,
    up: Family<Gauge>,
    incarnation: Family<Gauge>,
    restarts: Family<u64>,
    exits: Family<u64>,
    mailbox_depth: Family<Gauge>,
    mailbox_capacity: Family<Gauge>,
    mailbox_bytes: Family<Gauge>,
    mailbox_max_bytes: Family<Gauge>,
    handled: Family<u64>,
    failed: Family<u64>,
    dead_letters: Family<u64>,
    handle_seconds: Family<Histogram>,
    silence: Family<Gauge>,
    phi: Family<Gauge>,
}

impl Default for Tree {
    fn default() -> Self {
        use MetricType::{Counter, Gauge, Histogram};
        Self {
            intensity: Family::new(
                "warden_supervisor_intensity",
                "Restarts a supervisor allows in its period",
                Gauge,
            ),
            restarts_in_period: Family::new(
                "warden_supervisor_restarts_in_period",
                "Restarts counted in the supervisor's current window (it gives up past its intensity)",
                Gauge,
            ),
            up: Family::new(
                "warden_child_up",
                "1 while the child runs, 0 while it is restarting or stopped",
                Gauge,
            ),
            incarnation: Family::new(
                "warden_child_incarnation",
                "The child's current (latest) incarnation",
                Gauge,
            ),
            restarts: Family::new(
                "warden_child_restarts",
                "Restarts of the child by its supervisor",
                Counter,
            ),
            exits: Family::new(
                "warden_child_exits",
                "Incarnations of the child that ended, by reason",
                Counter,
            ),
            mailbox_depth: Family::new(
                "warden_child_mailbox_depth",
                "Messages waiting in the child's mailbox",
                Gauge,
            ),
            mailbox_capacity: Family::new(
                "warden_child_mailbox_capacity",
                "The most messages the child's mailbox holds",
                Gauge,
            ),
            mailbox_bytes: Family::new(
                "warden_child_mailbox_bytes",
                "Payload bytes waiting in the child's mailbox",
                Gauge,
            ),
            mailbox_max_bytes: Family::new(
                "warden_child_mailbox_max_bytes",
                "The most payload bytes the child's mailbox holds",
                Gauge,
            ),
            handled: Family::new(
                "warden_child_messages_handled",
                "Messages the child handled",
                Counter,
            ),
            failed: Family::new(
                "warden_child_messages_failed",
                "Messages to the child answered with an error instead (it crashed on them, its caller gave up)",
                Counter,
            ),
            dead_letters: Family::new(
                "warden_child_messages_dead_letters",
                "Messages to the child set aside as dead letters",
                Counter,
            ),
            handle_seconds: Family::new(
                "warden_child_handle_seconds",
                "How long the child took to handle a message (calls and sends)",
                Histogram,
            ),
            silence: Family::new(
                "warden_child_heartbeat_silence_seconds",
                "How long a busy child has gone without a heartbeat (0 when not judged)",
                Gauge,
            ),
            phi: Family::new(
                "warden_child_heartbeat_phi",
                "The phi-accrual suspicion of a child with a phi heartbeat policy",
                Gauge,
            ),
        }
    }
}

impl Tree {
    fn supervisor(&mut self, s: &SupervisorReport) {
        self.intensity.samples.push((path(&s.path), Gauge::count(s.intensity)));
        let used = Gauge::count(s.restarts_in_period);
        self.restarts_in_period.samples.push((path(&s.path), used));
        for child in &s.children {
            self.child(child);
            if let Some(sub) = &child.supervisor {
                self.supervisor(sub);
            }
        }
    }

    fn child(&mut self, c: &ChildReport) {
        let p = &c.info.path;
        let running = c.info.state == warden::ChildState::Running;
        self.up.samples.push((path(p), Gauge::count(i64::from(running))));
        self.incarnation.samples.push((path(p), Gauge::count(c.info.incarnation)));
        self.restarts.samples.push((path(p), c.info.restarts));
        for (reason, count) in &c.info.exits {
            self.exits.samples.push((vec![("path", label(p)), ("reason", label(reason))], *count));
        }
        if let Some(mailbox) = &c.mailbox {
            self.mailbox_depth.samples.push((path(p), Gauge::count(mailbox.queued)));
            self.mailbox_capacity.samples.push((path(p), Gauge::count(mailbox.capacity)));
            self.mailbox_bytes.samples.push((path(p), Gauge::count(mailbox.queued_bytes)));
            let max_bytes = Gauge::count(mailbox.max_queued_bytes);
            self.mailbox_max_bytes.samples.push((path(p), max_bytes));
        }
        if let Some(m) = &c.messages {
            self.handled.samples.push((path(p), m.handled));
            self.failed.samples.push((path(p), m.failed));
            self.dead_letters.samples.push((path(p), m.dead_letters));
            self.handle_seconds.samples.push((path(p), histogram(&m.handle_time)));
        }
        if let Some(h) = &c.heartbeat {
            self.silence.samples.push((path(p), Gauge::Measure(h.silent_ms as f64 / 1e3)));
            if let Some(phi) = h.phi {
                self.phi.samples.push((path(p), Gauge::Measure(phi)));
            }
        }
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), Error> {
        self.intensity.encode(encoder)?;
        self.restarts_in_period.encode(encoder)?;
        self.up.encode(encoder)?;
        self.incarnation.encode(encoder)?;
        self.restarts.encode(encoder)?;
        self.exits.encode(encoder)?;
        self.mailbox_depth.encode(encoder)?;
        self.mailbox_capacity.encode(encoder)?;
        self.mailbox_bytes.encode(encoder)?;
        self.mailbox_max_bytes.encode(encoder)?;
        self.handled.encode(encoder)?;
        self.failed.encode(encoder)?;
        self.dead_letters.encode(encoder)?;
        self.handle_seconds.encode(encoder)?;
        self.silence.encode(encoder)?;
        self.phi.encode(encoder)
    }
}

/// The cumulative counts of a report as the encoder takes them: per bucket, in
/// seconds, `+Inf` last.
fn histogram(times: &warden::messaging::HandleTimes) -> Histogram {
    let mut buckets = Vec::with_capacity(times.cumulative.len());
    let mut before = 0;
    for (i, &cumulative) in times.cumulative.iter().enumerate() {
        let bound = HANDLE_TIME_BOUNDS_US.get(i).map_or(f64::MAX, |&us| us as f64 / 1e6);
        buckets.push((bound, cumulative - before));
        before = cumulative;
    }
    Histogram { sum: times.sum_us as f64 / 1e6, count: before, buckets }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_value_cannot_break_its_line() {
        assert_eq!(label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(label("a\nb"), "a\\nb");
    }
}
