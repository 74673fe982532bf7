//! `warden run --watch`: the plugin author's edit-run loop. Every plugin file the
//! manifest names is watched; when its content changes (written in place, or replaced
//! by a build that writes a new file and renames it over the old one), every child
//! running it is upgraded to the new build, keeping its mailbox and state.
//!
//! The files are looked at every [`INTERVAL`] (their size, modification time and
//! inode: no notification API covers a file replaced by a rename in every
//! filesystem), and a change is acted on once the file has stayed the same for one
//! more look, so a build still writing it is not loaded half-written. A build that
//! does not load (not yet a component, say) is reported and the running version
//! kept; the next change is tried again.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;
use warden::runtime::Host;
use warden::supervisor::{ChildStart, Strategy, SupervisorSpec};

/// How often the files are looked at.
pub(crate) const INTERVAL: Duration = Duration::from_millis(250);

/// Who runs a file: plugin children (their supervisor and id), and simple_one_for_one
/// supervisors whose template does.
#[derive(Debug, Default)]
pub(crate) struct Users {
    children: Vec<(String, String)>,
    dynamic: Vec<String>,
}

/// Every plugin file of `spec`, with who runs it.
pub(crate) fn files(spec: &SupervisorSpec) -> BTreeMap<PathBuf, Users> {
    fn walk(path: &str, spec: &SupervisorSpec, out: &mut BTreeMap<PathBuf, Users>) {
        let dynamic = spec.strategy == Strategy::SimpleOneForOne;
        for child in &spec.children {
            match &child.start {
                ChildStart::Plugin(start) => {
                    let Some(file) = start.plugin.file() else { continue };
                    let users = out.entry(file.to_owned()).or_default();
                    if dynamic {
                        users.dynamic.push(path.to_owned());
                    } else {
                        users.children.push((path.to_owned(), child.id.clone()));
                    }
                }
                ChildStart::Supervisor(sub) => walk(&format!("{path}/{}", child.id), sub, out),
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("root", spec, &mut out);
    out
}

/// What a look at a file saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    len: u64,
    modified: i64,
    modified_ns: i64,
    inode: u64,
}

fn look(file: &Path) -> Option<Seen> {
    let meta = std::fs::metadata(file).ok()?;
    Some(Seen {
        len: meta.len(),
        modified: meta.mtime(),
        modified_ns: meta.mtime_nsec(),
        inode: meta.ino(),
    })
}

/// A digest of a file's content, to tell a new build from a file only touched.
fn content(file: &Path) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(file).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

/// One watched file: how it looked at the last look, and when last acted on (or at
/// the start) how it looked and what it held.
#[derive(Debug)]
struct File {
    last: Option<Seen>,
    acted: Option<Seen>,
    held: Option<u64>,
}

/// Watches `files` until `stop` turns true, upgrading their users on each change.
pub(crate) async fn watch(
    host: Host,
    files: BTreeMap<PathBuf, Users>,
    mut stop: watch::Receiver<bool>,
) {
    let mut state: BTreeMap<&Path, File> = files
        .keys()
        .map(|f| {
            let seen = look(f);
            (f.as_path(), File { last: seen, acted: seen, held: content(f) })
        })
        .collect();
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = crate::control::stopped(&mut stop) => return,
        }
        for (file, users) in &files {
            let Some(watched) = state.get_mut(file.as_path()) else { continue };
            let now = look(file);
            let before = std::mem::replace(&mut watched.last, now);
            // A change is acted on once, when the file has stopped changing (gone, or
            // still being written, it waits); only its content is read then.
            if now.is_none() || before != now || now == watched.acted {
                continue;
            }
            watched.acted = now;
            let path = file.clone();
            let held = tokio::task::spawn_blocking(move || content(&path)).await.ok().flatten();
            if held.is_none() || held == watched.held {
                continue;
            }
            watched.held = held;
            upgrade(&host, file, users).await;
        }
    }
}

/// Upgrades every user of `file` to what it holds now (compiled once); says on
/// stderr what failed.
async fn upgrade(host: &Host, file: &Path, users: &Users) {
    eprintln!("warden: {} changed: upgrading the children that run it", file.display());
    let loading = {
        let (host, file) = (host.clone(), file.to_owned());
        tokio::task::spawn_blocking(move || host.load(file))
    };
    let plugin = match loading.await {
        Ok(Ok(plugin)) => plugin,
        Ok(Err(e)) => {
            eprintln!("warden: --watch: the running version stays: {e}");
            return;
        }
        Err(_) => return,
    };
    for (supervisor, child) in &users.children {
        let upgrade = warden::Upgrade::new(plugin.clone());
        if let Err(e) = host.upgrade_child(supervisor, child, upgrade).await {
            eprintln!("warden: --watch: {supervisor}/{child} keeps its version: {e}");
        }
    }
    for supervisor in &users.dynamic {
        let upgrade = warden::Upgrade::new(plugin.clone());
        if let Err(e) = host.upgrade_children(supervisor, upgrade).await {
            eprintln!("warden: --watch: the children of {supervisor}: {e}");
        }
    }
}
