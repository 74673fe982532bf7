//! The run's stdout: its events and the replies to its commands, in order, written on
//! a thread of its own.
//!
//! ```text
//!   Host::subscribe (lossy: a slow reader loses the oldest) ──┐
//!                                                             ├─▶ printer thread ─▶ stdout
//!   control replies (lossless, each after event number N) ────┘
//! ```
//!
//! Events can be lost when stdout is slower than the tree: the printer then says so
//! in the stream (`events_dropped`) and goes on with the newest. Replies cannot be
//! lost; each is held until the events published before its command finished have
//! been printed (or dropped), so it follows everything its command caused. Writing
//! happens on the printer's own thread: a stdout nobody reads blocks that thread,
//! never the runtime's.

use crate::control::Reply;
use crate::line::{Line, Said};
use crate::render::{self, Style};
use std::future::Future;
use std::io::Write;
use tokio::sync::{mpsc, oneshot};
use warden::events::{Events, Received};

/// Where lines are written.
pub(crate) trait Out: Send {
    /// Writes one line (without its newline); an error ends the printing.
    fn line(&mut self, text: &str) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// A blocking writer: stdout, on the printer's own thread.
#[derive(Debug)]
pub(crate) struct Blocking<W>(pub(crate) W);

impl<W: Write + Send> Out for Blocking<W> {
    async fn line(&mut self, text: &str) -> std::io::Result<()> {
        writeln!(self.0, "{text}").and_then(|()| self.0.flush())
    }
}

/// Where the printer's events come from: a host's stream (a test's in the tests).
pub(crate) trait Source: Send + 'static {
    /// The next event or count of events lost; `None` at the end.
    fn next(&mut self) -> impl Future<Output = Option<Received>> + Send;
}

impl Source for Events {
    fn next(&mut self) -> impl Future<Output = Option<Received>> + Send {
        Events::next(self)
    }
}

/// How events are printed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Format {
    /// One JSON object per line (the CLI contract).
    Jsonl,
    /// A readable live log.
    Pretty(Style),
}

/// The printer thread; [`Printer::finish`] waits for it to write what is left.
#[derive(Debug)]
pub(crate) struct Printer {
    done: oneshot::Receiver<()>,
}

impl Printer {
    /// Prints `events` (subscribed when event number `since` was the last) and
    /// `replies` until both are closed; `clock_us` is the host's clock now (for the
    /// time of an `events_dropped` note).
    pub(crate) fn start(
        runtime: tokio::runtime::Handle,
        events: impl Source,
        since: u64,
        clock_us: u64,
        replies: mpsc::UnboundedReceiver<Reply>,
        format: Format,
    ) -> std::io::Result<Self> {
        let (finished, done) = oneshot::channel();
        let clock = clock(clock_us);
        std::thread::Builder::new().name("warden-printer".into()).spawn(move || {
            let out = Blocking(std::io::stdout());
            runtime.block_on(print(events, since, replies, format, out, clock));
            let _ = finished.send(());
        })?;
        Ok(Self { done })
    }

    /// Waits at most `timeout` for the printer to write what is left (stdout may be a
    /// pipe nobody reads).
    pub(crate) async fn finish(self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.done).await;
    }
}

/// The host's clock, from its reading `clock_us` now.
pub(crate) fn clock(clock_us: u64) -> impl Fn() -> u64 + Send + 'static {
    let started = std::time::Instant::now();
    move || clock_us + u64::try_from(started.elapsed().as_micros()).unwrap_or(0)
}

/// Writes `events` (subscribed when event number `since` was the last) and `replies`
/// to `out`, each reply after the events published before its command finished, until
/// both are closed or a write fails (a closed stdout or socket: the run goes on
/// without this log).
pub(crate) async fn print(
    mut events: impl Source,
    since: u64,
    mut replies: mpsc::UnboundedReceiver<Reply>,
    format: Format,
    mut out: impl Out,
    clock: impl Fn() -> u64,
) {
    if let Err(e) =
        print_until_failed(&mut events, since, &mut replies, format, &mut out, clock).await
    {
        tracing::debug!("event log closed: {e}");
    }
}

async fn print_until_failed(
    events: &mut impl Source,
    since: u64,
    replies: &mut mpsc::UnboundedReceiver<Reply>,
    format: Format,
    out: &mut impl Out,
    clock: impl Fn() -> u64,
) -> std::io::Result<()> {
    // The number of the last event printed or lost.
    let mut last = since;
    let mut held: Vec<Reply> = Vec::new();
    let (mut events_open, mut replies_open) = (true, true);
    while events_open || replies_open {
        tokio::select! {
            // Replies first: one already sent belongs before the events that follow.
            biased;
            reply = replies.recv(), if replies_open => match reply {
                Some(reply) => held.push(reply),
                None => replies_open = false,
            },
            received = events.next(), if events_open => match received {
                Some(Received::Event(record)) => {
                    while let Ok(reply) = replies.try_recv() {
                        held.push(reply);
                    }
                    flush(&mut held, record.seq - 1, out, format).await?;
                    if record.seq > last + 1 {
                        // Lost without a `Lagged`: the numbers are what counts.
                        write(out, format, &dropped(record.seq - last - 1, record.ts_us)).await?;
                    }
                    last = record.seq;
                    write(out, format, &Line::Event(record)).await?;
                }
                Some(Received::Missed(n)) => {
                    last += n;
                    write(out, format, &dropped(n, clock())).await?;
                }
                None => events_open = false,
            },
        }
        // Replies whose events are out; all of them once no more events can come.
        flush(&mut held, if events_open { last } else { u64::MAX }, out, format).await?;
    }
    Ok(())
}

/// Prints the held replies that come after no event later than `upto`, in order.
async fn flush(
    held: &mut Vec<Reply>,
    upto: u64,
    out: &mut impl Out,
    format: Format,
) -> std::io::Result<()> {
    held.sort_by_key(|reply| reply.after);
    let ready = held.partition_point(|reply| reply.after <= upto);
    for reply in held.drain(..ready) {
        write(out, format, &reply.line).await?;
    }
    Ok(())
}

fn dropped(count: u64, ts_us: u64) -> Line {
    Line::Said { said: Said::EventsDropped { count }, ts_us }
}

pub(crate) async fn write(out: &mut impl Out, format: Format, line: &Line) -> std::io::Result<()> {
    out.line(&text(format, line)).await
}

/// A line as `format` shows it.
pub(crate) fn text(format: Format, line: &Line) -> String {
    match format {
        Format::Pretty(style) => render::pretty(line, style),
        Format::Jsonl => match serde_json::to_string(line) {
            Ok(line) => line,
            Err(e) => format!("{{\"event\":\"error\",\"message\":{:?}}}", e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::{self, error::RecvError};
    use warden::events::{Event, EventRecord};

    /// A lagging stream made by hand: a small broadcast channel.
    impl Source for broadcast::Receiver<EventRecord> {
        async fn next(&mut self) -> Option<Received> {
            match self.recv().await {
                Ok(record) => Some(Received::Event(record)),
                Err(RecvError::Lagged(n)) => Some(Received::Missed(n)),
                Err(RecvError::Closed) => None,
            }
        }
    }

    fn record(seq: u64) -> EventRecord {
        let event =
            Event::ChildStarted { path: format!("root/c{seq}"), incarnation: 1, node: None };
        EventRecord { event, ts_us: seq, seq }
    }

    fn reply(id: u64, after: u64) -> Reply {
        let said = Said::Reply { id: Some(id.into()), ok: true, result: None, error: None };
        Reply { after, line: Line::Said { said, ts_us: 0 }, _slot: None }
    }

    #[tokio::test]
    async fn a_lagging_stream_says_so_and_loses_no_reply() {
        let (events_tx, events) = broadcast::channel(2);
        let (replies_tx, replies) = mpsc::unbounded_channel();
        for seq in 1..=5 {
            events_tx.send(record(seq)).unwrap();
        }
        replies_tx.send(reply(1, 0)).unwrap();
        replies_tx.send(reply(2, 5)).unwrap();
        replies_tx.send(reply(3, 4)).unwrap();
        drop((events_tx, replies_tx));
        let mut out = Vec::new();
        print(events, 0, replies, Format::Jsonl, Blocking(&mut out), || 7).await;
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let shown: Vec<String> = lines
            .iter()
            .map(|l| match l["event"].as_str().unwrap() {
                "reply" => format!("reply {}", l["id"]),
                "events_dropped" => format!("dropped {}", l["count"]),
                _ => l["path"].as_str().unwrap().to_owned(),
            })
            .collect();
        assert_eq!(
            shown,
            ["reply 1", "dropped 3", "root/c4", "reply 3", "root/c5", "reply 2"],
            "each reply after the events before it, none lost"
        );
    }
}
