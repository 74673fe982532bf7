//! The control socket: the control protocol of stdin on a Unix socket, for several
//! clients at once (`warden ctl`, scripts, the live view's admin actions).
//!
//! ```text
//!   client ──▶ accept (owner only, at most MAX_SESSIONS) ──▶ session
//!                                                            │ control::serve (its lines)
//!                                                            ▼
//!                                              its writer ◀── its replies
//!                                                 ▲
//!                            `subscribe` ─────────┘ then the events too, in order
//! ```
//!
//! Each connection is a session of its own: its replies go back on it only, and it
//! sees events only after it asked (`{"cmd":"subscribe"}`), in JSON lines or in the
//! readable format. A session that does not read holds at most
//! [`control::MAX_PENDING`] replies and loses events as a slow stdout does (saying
//! so); it never slows the tree or another session.

use crate::control::{self, Reply, Session, ShutdownAsked, Subscription};
use crate::printer::{self, Out};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use warden::runtime::Host;

/// The control socket's place in a run's state directory `dir`.
pub(crate) fn default_path(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// The most clients connected at once; one more is told so and closed.
const MAX_SESSIONS: usize = 64;

/// A bound control socket; its file is removed when it is dropped.
#[derive(Debug)]
pub(crate) struct Socket {
    path: PathBuf,
    listener: UnixListener,
    /// The socket file's inode, so that only this socket's file is removed.
    inode: u64,
    /// Its owner: the only user (besides root) whose connections are served.
    owner: u32,
}

/// Why a control socket could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BindError {
    #[error("another warden run is listening on the control socket {0}")]
    Taken(PathBuf),
    #[error("cannot use {0} as the control socket: it exists and is not a socket")]
    NotASocket(PathBuf),
    #[error("cannot listen on the control socket {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl Socket {
    /// Listens on `path`, owner-only: a stale socket there (nothing listening) is
    /// replaced; a live one is left alone.
    pub(crate) fn bind(path: &Path) -> Result<Self, BindError> {
        let io = |source| BindError::Io { path: path.to_owned(), source };
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(BindError::NotASocket(path.to_owned()));
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(BindError::Taken(path.to_owned())),
                Err(_) => std::fs::remove_file(path).map_err(io)?,
            }
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let meta = std::fs::metadata(path).map_err(io)?;
        Ok(Self { path: path.to_owned(), listener, inode: meta.ino(), owner: meta.uid() })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Serves clients until `stop` turns true, then lets every session answer what it
    /// was asked (each bounded by `settle`).
    pub(crate) async fn serve(
        self,
        host: Host,
        base: PathBuf,
        shutdown: mpsc::UnboundedSender<ShutdownAsked>,
        mut stop: watch::Receiver<bool>,
        settle: std::time::Duration,
    ) {
        let mut sessions = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = control::stopped(&mut stop) => break,
            };
            while sessions.try_join_next().is_some() {}
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: wait a little rather than spin.
                    tracing::warn!("control socket: cannot accept a client: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            if !self.allowed(&stream) {
                continue;
            }
            if sessions.len() >= MAX_SESSIONS {
                sessions.spawn(refuse(stream));
                continue;
            }
            let session =
                session(stream, host.clone(), base.clone(), shutdown.clone(), stop.clone());
            sessions.spawn(session);
        }
        let all = async { while sessions.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(settle, all).await;
    }

    /// Whether the peer is this socket's owner or root (the file's mode says the same;
    /// this also covers the moment between bind and chmod).
    fn allowed(&self, stream: &UnixStream) -> bool {
        match stream.peer_cred() {
            Ok(cred) => cred.uid() == self.owner || cred.uid() == 0,
            Err(_) => false,
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|meta| meta.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Tells a client over the limit why it is closed.
async fn refuse(mut stream: UnixStream) {
    let error = format!("too many control clients (the most is {MAX_SESSIONS}); try again later");
    let line = serde_json::json!({ "event": "reply", "ok": false, "error": error });
    let _ = stream.write_all(format!("{line}\n").as_bytes()).await;
}

/// One client: its commands, answered on its own connection.
async fn session(
    stream: UnixStream,
    host: Host,
    base: PathBuf,
    shutdown: mpsc::UnboundedSender<ShutdownAsked>,
    stop: watch::Receiver<bool>,
) {
    let (read, write) = stream.into_split();
    let (replies, replies_rx) = mpsc::unbounded_channel();
    let (subscribe, subscribed) = oneshot::channel();
    let writer = tokio::spawn(write_session(write, replies_rx, subscribed, host.clone()));
    let session = Session { replies, subscribe: Some(subscribe) };
    let input = tokio::io::BufReader::new(read);
    let mut running = control::serve(host, base, input, session, shutdown, stop).await;
    while running.join_next().await.is_some() {}
    let _ = writer.await;
}

/// Writes a session's replies as they come; once it subscribed, its events too, with
/// each reply after the events its command caused.
async fn write_session(
    mut out: OwnedWriteHalf,
    mut replies: mpsc::UnboundedReceiver<Reply>,
    mut subscribed: oneshot::Receiver<Subscription>,
    host: Host,
) {
    let mut waiting = true;
    loop {
        tokio::select! {
            reply = replies.recv() => match reply {
                Some(reply) => {
                    if printer::write(&mut out, printer::Format::Jsonl, &reply.line).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            subscription = &mut subscribed, if waiting => match subscription {
                Ok(Subscription { events, since, format, colour, reply }) => {
                    // Its reply is JSON whatever the format: the client reads it first.
                    let first = printer::write(&mut out, printer::Format::Jsonl, &reply.line);
                    if first.await.is_err() {
                        return;
                    }
                    let format = match format {
                        control::Format::Jsonl => printer::Format::Jsonl,
                        control::Format::Pretty => {
                            printer::Format::Pretty(crate::render::Style::new(colour))
                        }
                    };
                    let clock = printer::clock(host.clock_us());
                    drop(host);
                    printer::print(events, since, replies, format, out, clock).await;
                    return;
                }
                Err(_) => waiting = false,
            },
        }
    }
}

impl Out for OwnedWriteHalf {
    async fn line(&mut self, text: &str) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(b'\n');
        self.write_all(&bytes).await
    }
}
