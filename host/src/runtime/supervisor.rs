//! A supervisor task: carries out its [`Core`]'s directives with real sandboxes and
//! nested supervisors, and feeds back what happened.

use super::error::HostError;
use super::protocol::{AdminReply, AdminRequest, Answer, SupMsg};
use super::report::{ChildReport, MailboxInfo, SupervisorReport};
use super::shared::Shared;
use super::{cluster, handle, worker};
use crate::events::Event;
use crate::messaging::Mailbox;
use crate::sandbox::{BoxFuture, Shutdown};
use crate::supervisor::{
    AdminError, ChildStart, ChildState, Core, Directive, Placement, Restart, StartCause,
    SupervisorSpec, UpgradeStep,
};
use crate::task::Owned;
use crate::{ExitReason, KillCause};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument;

/// A started supervisor: its channel and its task.
pub(crate) type Started = (mpsc::UnboundedSender<SupMsg>, Owned<ExitReason>);

/// Who to tell when this supervisor exits.
pub(crate) struct Parent {
    pub(crate) tx: mpsc::UnboundedSender<SupMsg>,
    pub(crate) id: String,
    pub(crate) incarnation: u64,
}

enum Running {
    Worker(handle::Handle),
    /// A plugin child placed on another node of the cluster.
    Remote(cluster::Placed),
    Supervisor {
        incarnation: u64,
        tx: mpsc::UnboundedSender<SupMsg>,
        task: Owned<ExitReason>,
    },
}

impl Running {
    fn incarnation(&self) -> u64 {
        match self {
            Running::Worker(handle) => handle.incarnation,
            Running::Remote(placed) => placed.incarnation,
            Running::Supervisor { incarnation, .. } => *incarnation,
        }
    }
}

struct Supervisor {
    shared: Arc<Shared>,
    core: Core,
    me: mpsc::UnboundedSender<SupMsg>,
    children: HashMap<String, Running>,
    /// The mailboxes of this supervisor's plugin children, kept while their specs are.
    mailboxes: HashMap<String, Arc<Mailbox>>,
    timers: JoinSet<()>,
    /// The admin request whose start is on the agenda.
    admin: Option<Answer>,
    /// Admin requests answered when the agenda is done, so that each reply follows
    /// the events of what it asked for.
    deferred: Vec<(Answer, Result<AdminReply, HostError>)>,
    /// Exits the children announced themselves, by path and incarnation: the core's
    /// announcement of them is skipped. Cleared when the agenda is done.
    announced: HashSet<(String, u64)>,
    /// The node each child placed on another node last started on, by id: its events
    /// and `which_children` name it.
    placed: HashMap<String, String>,
    /// The children this turn may have started or stopped: when the agenda is done,
    /// their mailboxes learn whether calls to them can still be answered.
    touched: BTreeSet<String>,
}

/// Starts the supervisor at `path`; returns once its children are started (or its
/// start failed, with the reason).
pub(crate) fn start(
    shared: Arc<Shared>,
    path: String,
    spec: SupervisorSpec,
    parent: Option<Parent>,
) -> BoxFuture<'static, Result<Started, ExitReason>> {
    // Boxed and declared `Send`: supervisors start supervisors, and a recursive
    // `async fn` cannot prove that of itself.
    Box::pin(start_inner(shared, path, spec, parent))
}

async fn start_inner(
    shared: Arc<Shared>,
    path: String,
    spec: SupervisorSpec,
    parent: Option<Parent>,
) -> Result<Started, ExitReason> {
    let mut seed = shared.seed();
    let random = Box::new(move || {
        // xorshift64*: jitter only needs to be spread, not secret.
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    });
    let core =
        Core::new(path.clone(), &spec, random).map_err(|errors| ExitReason::StartFailed {
            message: errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        })?;
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let supervisor = Supervisor {
        shared: Arc::clone(&shared),
        core,
        me: tx.clone(),
        children: HashMap::new(),
        mailboxes: HashMap::new(),
        touched: BTreeSet::new(),
        timers: JoinSet::new(),
        admin: None,
        deferred: Vec::new(),
        announced: HashSet::new(),
        placed: HashMap::new(),
    };
    shared.register(&path, tx.clone());
    let task = Owned(tokio::spawn(supervisor.run(rx, ready_tx, parent)));

    match ready_rx.await {
        Ok(Ok(())) => Ok((tx, task)),
        Ok(Err(reason)) => Err(reason),
        Err(_) => {
            Err(ExitReason::StartFailed { message: format!("supervisor {path} died starting") })
        }
    }
}

impl Supervisor {
    /// Runs until the supervisor exits; then tells its parent (or the host, for the
    /// root). A panic in this task ends the supervisor with `host_panic`, reported the
    /// same way; its children, whose tasks it owns, end with it.
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<SupMsg>,
        ready: oneshot::Sender<Result<(), ExitReason>>,
        parent: Option<Parent>,
    ) -> ExitReason {
        let shared = Arc::clone(&self.shared);
        let path = self.core.path().to_owned();
        let mut ready = Some(ready);
        let reason = match crate::task::catch_panic(self.serve(&mut rx, &mut ready)).await {
            Ok(reason) => reason,
            Err(message) => {
                let reason = ExitReason::HostPanic { message };
                tracing::error!(supervisor = path, "{reason}");
                // Its children end with it (their tasks are its own), unannounced.
                self.children.clear();
                shared
                    .emit(Event::SupervisorStopped { path: path.clone(), reason: reason.clone() });
                reason
            }
        };
        self.close(&mut rx);
        if parent.is_none() {
            // After the tree's last event, before anyone waiting on the root learns
            // of its exit (and may start the next tree): its streams end.
            shared.post.summarize_dead_letters();
            shared.events.end();
        }
        match ready.take() {
            // Failed while starting: the starter is told, not the parent.
            Some(ready) => {
                let _ = ready.send(Err(reason.clone()));
            }
            None => match parent {
                Some(parent) => {
                    let _ = parent.tx.send(SupMsg::ChildExited {
                        id: parent.id,
                        incarnation: parent.incarnation,
                        reason: reason.clone(),
                        announced: false,
                    });
                }
                None => shared.root_exited(reason.clone()),
            },
        }
        reason
    }

    async fn serve(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<SupMsg>,
        ready: &mut Option<oneshot::Sender<Result<(), ExitReason>>>,
    ) -> ExitReason {
        self.core.init(Instant::now());
        loop {
            if let Some(reason) = self.drain().await {
                return reason;
            }
            if let Some(ready) = ready.take() {
                let _ = ready.send(Ok(()));
            }
            let Some(msg) = rx.recv().await else {
                self.core.shutdown();
                continue;
            };
            self.handle(msg);
        }
    }

    /// What an exited supervisor leaves: no longer a target of requests, its
    /// children's mailboxes gone with their specs, and every request it still holds
    /// answered, not dropped.
    fn close(&mut self, rx: &mut mpsc::UnboundedReceiver<SupMsg>) {
        self.shared.unregister(self.core.path());
        for (id, _) in std::mem::take(&mut self.mailboxes) {
            self.shared.post.forget(&self.core.child_path(&id));
        }
        for (id, node) in std::mem::take(&mut self.placed) {
            cluster::forget(&self.shared, &node, &self.core.child_path(&id));
        }
        let shutting_down = || Err(HostError::Admin(AdminError::ShuttingDown));
        for (reply, _) in self.deferred.drain(..) {
            let _ = reply.send(shutting_down());
        }
        if let Some(reply) = self.admin.take() {
            let _ = reply.send(shutting_down());
        }
        rx.close();
        while let Ok(msg) = rx.try_recv() {
            if let SupMsg::Admin(_, reply) = msg {
                let _ = reply.send(shutting_down());
            }
        }
    }

    /// This supervisor and its children as they are at `now`.
    fn report(&self, now: Instant) -> SupervisorReport {
        let (strategy, intensity, period) = self.core.limits();
        let children = self
            .core
            .which_children()
            .into_iter()
            .map(|mut info| {
                info.node = self.placed.get(&info.name).cloned();
                let mailbox = self.mailboxes.get(&info.name);
                let heartbeat = match self.children.get(&info.name) {
                    Some(Running::Worker(handle)) => handle.heartbeat.as_ref(),
                    _ => None,
                };
                let restart = self.core.spec(&info.name).map_or(Restart::Temporary, |s| s.restart);
                ChildReport {
                    restart,
                    mailbox: mailbox.map(|m| MailboxInfo::of(m)),
                    messages: mailbox.map(|m| m.tally.counts()),
                    heartbeat: heartbeat.map(|(beats, policy)| beats.status(policy, now)),
                    supervisor: None,
                    info,
                }
            })
            .collect();
        SupervisorReport {
            path: self.core.path().to_owned(),
            strategy,
            intensity,
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            restarts_in_period: self.core.restarts_in_period(now),
            children,
        }
    }

    fn handle(&mut self, msg: SupMsg) {
        let now = Instant::now();
        match msg {
            SupMsg::ChildExited { id, incarnation, reason, announced } => {
                if self.children.get(&id).map(Running::incarnation) == Some(incarnation) {
                    self.children.remove(&id);
                }
                if announced {
                    self.announced.insert((self.core.child_path(&id), incarnation));
                }
                self.core.exited(&id, incarnation, reason, now);
                self.touched.insert(id);
            }
            SupMsg::Timer { id, generation } => {
                // Reap the timers that fired; a restarting child sets one each time.
                while self.timers.try_join_next().is_some() {}
                self.core.timer(&id, generation, now);
            }
            SupMsg::Shutdown => self.core.shutdown(),
            SupMsg::Admin(request, reply) => {
                // Answered once what they asked for is done: the child stopped (its
                // `child_exited` published), its state removed.
                let deferred = matches!(
                    request,
                    AdminRequest::TerminateChild(_) | AdminRequest::DeleteChild(_)
                );
                let answer = match request {
                    AdminRequest::WhichChildren => {
                        let mut children = self.core.which_children();
                        for child in &mut children {
                            child.node = self.placed.get(&child.name).cloned();
                        }
                        Ok(AdminReply::Children(children))
                    }
                    AdminRequest::Report => Ok(AdminReply::Report(Box::new(self.report(now)))),
                    AdminRequest::Spec(id) => match id {
                        Some(id) => self.core.spec(&id).cloned().ok_or(AdminError::NotFound),
                        None => self.core.template().cloned().ok_or(AdminError::NotSimpleOneForOne),
                    }
                    .map(|spec| AdminReply::Spec(Box::new(spec))),
                    AdminRequest::CountChildren => {
                        Ok(AdminReply::Counts(self.core.count_children()))
                    }
                    AdminRequest::Admits(spec) => self.core.admits(&spec).map(|()| AdminReply::Ok),
                    AdminRequest::StartChild(spec) => {
                        self.core.start_child(*spec).map(|()| AdminReply::Pending)
                    }
                    AdminRequest::StartDynamic { name, config } => {
                        self.core.start_dynamic(name, config).map(|_| AdminReply::Pending)
                    }
                    AdminRequest::RestartChild(id) => {
                        self.core.restart_child(&id).map(|()| AdminReply::Pending)
                    }
                    AdminRequest::TerminateChild(id) => {
                        let done = self.core.terminate_child(&id).map(|()| AdminReply::Ok);
                        self.touched.insert(id);
                        done
                    }
                    AdminRequest::DeleteChild(id) => {
                        self.core.delete_child(&id).map(|()| AdminReply::Ok)
                    }
                    AdminRequest::UpgradeChild { id, change } => {
                        let from = match self.core.spec(&id).map(|spec| &spec.start) {
                            Some(ChildStart::Plugin(old)) => self.shared.version(&old.plugin),
                            _ => String::new(),
                        };
                        let versions = (from, self.shared.version(change.plugin()));
                        let step = self.core.upgrade_child(&id, |old| change.apply(old), versions);
                        step.map(|step| match step {
                            UpgradeStep::Stored => AdminReply::Ok,
                            UpgradeStep::Started => AdminReply::Pending,
                        })
                    }
                    AdminRequest::UpgradeTemplate(change) => self
                        .core
                        .upgrade_template(|old| change.apply(old))
                        .map(|before| AdminReply::Before(Box::new(before))),
                };
                match answer {
                    // Answered when the start it asked for is reported.
                    Ok(AdminReply::Pending) => self.admin = Some(reply),
                    Ok(AdminReply::Ok) if deferred => {
                        self.deferred.push((reply, Ok(AdminReply::Ok)))
                    }
                    Ok(answer) => {
                        let _ = reply.send(Ok(answer));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(HostError::Admin(e)));
                    }
                }
            }
        }
    }

    /// Carries out the agenda; returns the supervisor's exit reason once it exits.
    async fn drain(&mut self) -> Option<ExitReason> {
        while let Some(directive) = self.core.pop() {
            match directive {
                Directive::Start { child, incarnation, cause } => {
                    self.touched.insert(child.clone());
                    let path = self.core.child_path(&child);
                    let span =
                        tracing::info_span!("warden.start", path, incarnation, cause = ?cause);
                    let result = self.start_child(&child, incarnation).instrument(span).await;
                    let admin = self.core.started(&child, result, cause, Instant::now());
                    // Only an admin start answers the pending request, after the
                    // start's events.
                    if let Some(result) = admin
                        && let Some(reply) = self.admin.take()
                    {
                        let path = self.core.child_path(&child);
                        let answer = result.map(|()| AdminReply::Started(child)).map_err(
                            |reason| match cause {
                                StartCause::Upgrade => HostError::UpgradeFailed { path, reason },
                                _ => HostError::StartFailed { path, reason },
                            },
                        );
                        self.deferred.push((reply, answer));
                    }
                }
                Directive::Stop { child, shutdown } => {
                    let reason = self.stop_child(&child, shutdown).await;
                    self.core.stopped(&child, reason);
                }
                Directive::StopAll { children, shutdown } => {
                    let results = self.stop_all(children, shutdown).await;
                    self.core.stopped_all(results);
                }
                Directive::RestartAfter { child, delay, generation } => {
                    let me = self.me.clone();
                    self.timers.spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = me.send(SupMsg::Timer { id: child, generation });
                    });
                }
                Directive::Forget { child, keep_state } => self.forget(&child, keep_state).await,
                Directive::Emit(event) => self.emit(event),
                Directive::Exit(reason) => {
                    // What was asked and done before the supervisor exits is answered.
                    self.answer_deferred();
                    return Some(reason);
                }
            }
        }
        self.announced.clear();
        self.mark_stopped().await;
        self.answer_deferred();
        None
    }

    /// Tells the mailboxes of the children touched this turn whether their child is
    /// stopped with no restart coming (calls to it are then answered `noproc`): before
    /// the replies, so a call made after `terminate_child` returns is refused at once,
    /// and one made after `restart_child` returns waits for its answer.
    ///
    /// A child placed on another node has its mailbox there: that node is told (and
    /// answers) before the replies too; it clears the mark itself when an incarnation
    /// starts there again.
    async fn mark_stopped(&mut self) {
        for id in std::mem::take(&mut self.touched) {
            let stopped = self.core.state(&id) == Some(ChildState::Stopped);
            if let Some(mailbox) = self.mailboxes.get(&id) {
                self.shared.post.set_stopped(mailbox, stopped);
            } else if let Some(node) = self.placed.get(&id).filter(|_| stopped) {
                cluster::stopped(&self.shared, node, &self.core.child_path(&id)).await;
            }
        }
    }

    fn answer_deferred(&mut self) {
        for (reply, answer) in self.deferred.drain(..) {
            let _ = reply.send(answer);
        }
    }

    /// Publishes an event of the core's: an exit its child announced itself is not
    /// published twice; a start, once out, lets the child's worker take messages.
    fn emit(&mut self, event: Event) {
        match event {
            Event::ChildExited { path, incarnation, .. }
                if self.announced.remove(&(path.clone(), incarnation)) => {}
            Event::ChildExited { path, incarnation, reason, .. } => {
                let node = self.placed.get(self.core.child_id(&path)).cloned();
                self.shared.emit(Event::ChildExited { path, incarnation, reason, node });
            }
            Event::ChildStarted { path, incarnation, .. } => {
                let id = self.core.child_id(&path).to_owned();
                let node = match self.children.get(&id) {
                    Some(Running::Remote(placed)) => Some(placed.node.clone()),
                    _ => None,
                };
                let placed = node.is_some();
                self.shared.emit(Event::ChildStarted { path: path.clone(), incarnation, node });
                // An exit of it that came first is announced after its start.
                if placed {
                    self.shared.nodes.confirm(&self.shared, &path, incarnation);
                }
                if let Some(Running::Worker(handle)) = self.children.get_mut(&id)
                    && handle.incarnation == incarnation
                    && let Some(go) = handle.go.take()
                {
                    let _ = go.send(());
                }
            }
            event => self.shared.emit(event),
        }
    }

    /// Stops these (dynamic) children in parallel; how each ended, in the order they
    /// did.
    async fn stop_all(
        &mut self,
        children: Vec<String>,
        shutdown: Shutdown,
    ) -> Vec<(String, ExitReason)> {
        let mut stops = JoinSet::new();
        for id in children {
            if let Some(running) = self.take_running(&id) {
                let incarnation = running.incarnation();
                stops.spawn(async move { (id, incarnation, stop(running, shutdown).await) });
            }
        }
        let mut results = Vec::new();
        while let Some(done) = stops.join_next().await {
            if let Ok((id, incarnation, (reason, announced))) = done {
                if announced {
                    self.announced.insert((self.core.child_path(&id), incarnation));
                }
                results.push((id, reason));
            }
        }
        results
    }

    /// A child's spec is gone: its mailbox goes, and its state unless it is kept.
    async fn forget(&mut self, child: &str, keep_state: bool) {
        let path = self.core.child_path(child);
        let placed = self.placed.remove(child);
        if let Some(node) = &placed {
            cluster::forget(&self.shared, node, &path);
        }
        let placed = placed.is_some();
        if self.mailboxes.remove(child).is_some() {
            self.shared.post.forget(&path);
        }
        // Awaited: a child started next under the same path must not find its
        // predecessor's state (kept in the cluster for a child placed on a node).
        if !keep_state {
            let store = match (placed, self.shared.nodes.cluster()) {
                (true, Some(cluster)) => Arc::clone(&cluster.state) as Arc<dyn crate::StateStore>,
                _ => Arc::clone(&self.shared.state),
            };
            if let Err(e) = store.remove_tree(&path).await {
                tracing::warn!(child = path, "could not remove its state: {e}");
            }
        }
    }

    async fn start_child(&mut self, id: &str, incarnation: u64) -> Result<(), ExitReason> {
        let spec = self
            .core
            .spec(id)
            .cloned()
            .ok_or_else(|| ExitReason::StartFailed { message: format!("no child {id}") })?;
        let path = self.core.child_path(id);
        let running = match spec.start {
            ChildStart::Plugin(start) if spec.placement != Placement::Local => {
                let nodes = match &spec.placement {
                    Placement::Nodes(nodes) => nodes.as_slice(),
                    Placement::Local => &[],
                };
                let me = self.me.clone();
                let upgraded_from = self.core.upgrading_from(id).map(str::to_owned);
                let start = (&*start, upgraded_from);
                let placed =
                    cluster::start(&self.shared, (id, &path, incarnation), start, nodes, me)
                        .await?;
                // Started on another node than before: the mailbox there goes.
                if let Some(before) = self.placed.insert(id.to_owned(), placed.node.clone())
                    && before != placed.node
                {
                    cluster::forget(&self.shared, &before, &path);
                }
                Running::Remote(placed)
            }
            ChildStart::Plugin(start) => {
                let plugin = self
                    .shared
                    .plugin(&start.plugin)
                    .await
                    .map_err(|e| ExitReason::StartFailed { message: e.to_string() })?;
                // The mailbox outlives incarnations: opened at the first start, kept
                // until the spec is forgotten.
                let mailbox = Arc::clone(
                    self.mailboxes
                        .entry(id.to_owned())
                        .or_insert_with(|| self.shared.post.open(&path, &start.mailbox)),
                );
                let mut config = worker::sandbox_config(&self.shared, path, &start, &mailbox);
                config.upgraded_from = self.core.upgrading_from(id).map(str::to_owned);
                let start = worker::Start {
                    id: id.to_owned(),
                    incarnation,
                    plugin,
                    config,
                    hibernate_after: start.hibernate_after,
                    mailbox,
                    supervisor: self.me.clone(),
                    node: None,
                };
                let handle = worker::start(&self.shared, start).await?;
                Running::Worker(handle)
            }
            ChildStart::Supervisor(sub) => {
                let parent = Parent { tx: self.me.clone(), id: id.to_owned(), incarnation };
                let (tx, task) = start(Arc::clone(&self.shared), path, *sub, Some(parent)).await?;
                Running::Supervisor { incarnation, tx, task }
            }
        };
        self.children.insert(id.to_owned(), running);
        Ok(())
    }

    fn take_running(&mut self, id: &str) -> Option<Running> {
        self.children.remove(id)
    }

    async fn stop_child(&mut self, id: &str, shutdown: Shutdown) -> ExitReason {
        match self.take_running(id) {
            Some(running) => {
                let incarnation = running.incarnation();
                let (reason, announced) = stop(running, shutdown).await;
                if announced {
                    self.announced.insert((self.core.child_path(id), incarnation));
                }
                reason
            }
            // It ended on its own meanwhile; its exit message is stale now.
            None => ExitReason::Shutdown,
        }
    }
}

/// Stops one child as `shutdown` says: graceful within the timeout, then killed.
/// Returns how it ended, and whether it announced that itself (a worker does).
async fn stop(running: Running, shutdown: Shutdown) -> (ExitReason, bool) {
    let running = match running {
        // Announced here by the core, unless its exit was announced meanwhile.
        Running::Remote(placed) => return placed.stop(shutdown).await,
        running => running,
    };
    let is_worker = matches!(running, Running::Worker(_));
    let reason = stop_running(running, shutdown).await;
    match reason {
        Ok(reason) => (reason, is_worker),
        Err(reason) => (reason, false),
    }
}

/// The stopped child's exit reason; `Err` when its task did not end on its own (it
/// was aborted), so it announced nothing.
async fn stop_running(running: Running, shutdown: Shutdown) -> Result<ExitReason, ExitReason> {
    match running {
        Running::Worker(handle) => handle.stop(shutdown).await,
        Running::Remote(_) => unreachable!("stopped by `stop`"),
        Running::Supervisor { tx, mut task, .. } => {
            let _ = tx.send(SupMsg::Shutdown);
            match shutdown {
                Shutdown::Timeout(limit) => match tokio::time::timeout(limit, &mut task.0).await {
                    Ok(result) => handle::joined(result),
                    Err(_) => {
                        task.0.abort();
                        Err(ExitReason::Killed { cause: KillCause::ShutdownTimeout })
                    }
                },
                Shutdown::BrutalKill => {
                    task.0.abort();
                    Err(ExitReason::Killed { cause: KillCause::BrutalKill })
                }
                Shutdown::Infinity => handle::joined((&mut task.0).await),
            }
        }
    }
}
