//! The TOML manifest: a supervision tree as plain serde data, turned into a
//! [`SupervisorSpec`] with every problem reported at its place.
//!
//! ```toml
//! data_dir = "data"            # durable state; default: see `warden run --help`
//!
//! [root]
//! strategy = "one_for_one"     # one_for_all, rest_for_one, simple_one_for_one
//! intensity = 1                # restarts allowed within `period` (OTP's default 1 in 5 s)
//! period = "5s"
//!
//! [[root.children]]
//! name = "worker"
//! plugin = "plugins/chaos.wasm"   # relative to the manifest
//! restart = "permanent"           # transient, temporary
//! shutdown = "5s"                 # or "brutal_kill", "infinity"
//! config = { fail_init_from = 3 } # handed to init as JSON
//! limits = { memory = "16MiB", deadline = "1s", message_size = "64KiB", mailbox = 256,
//!            timers = 1024, timer_bytes = "4MiB", output = "1MiB" }
//! grants = { targets = ["root/pool/*"] }  # whom it may message (itself always)
//! heartbeat = { timeout = "200ms" }       # or { detector = "phi", threshold = 8 }
//! circuit = { failures = 3, reset = "1s" }
//! poison_after = 1              # tries a crashing message gets (1: dead-lettered at once)
//! state = { max_bytes = "1MiB", max_keys = 1000, max_value = "64KiB", keep = false }
//! hibernate_after = "1s"       # idle that long: no instance until the next message
//!
//! [[root.children]]
//! name = "pool"
//! supervisor = { strategy = "simple_one_for_one", children = [{ name = "w", plugin = "w.wasm" }] }
//! ```

use crate::TrapKind;
use crate::spec::{
    AutoShutdown, Backoff, ChildLimits, ChildSpec, CircuitConfig, DirGrant, Grants,
    HeartbeatPolicy, MailboxConfig, PhiAccrual, PluginStart, Restart, Shutdown, SpecError,
    Strategy, SupervisorSpec, Targets, validate,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A manifest file's top level.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Where children's durable state is kept, relative to the manifest. The
    /// command line's `--data-dir` overrides it; without either, `warden run` uses a
    /// directory of its own per manifest (see the README).
    #[serde(default)]
    pub data_dir: Option<String>,
    /// The root supervisor.
    pub root: SupervisorEntry,
}

/// The settings of a manifest beside its tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// `data_dir`, resolved against the manifest's directory.
    pub data_dir: Option<PathBuf>,
}

/// A supervisor in the manifest.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SupervisorEntry {
    /// The restart strategy.
    pub strategy: Strategy,
    /// Restarts allowed within `period`; default 1.
    #[serde(default = "default_intensity")]
    pub intensity: i64,
    /// The intensity window, e.g. "5s"; default 5 s.
    #[serde(default)]
    pub period: Option<String>,
    /// Default never.
    #[serde(default)]
    pub auto_shutdown: AutoShutdown,
    /// The backoff of every child that sets none of its own; default none (OTP's
    /// immediate restarts).
    #[serde(default)]
    pub backoff: Option<BackoffEntry>,
    /// The children in start order.
    #[serde(default)]
    pub children: Vec<ChildEntry>,
}

fn default_intensity() -> i64 {
    1
}

/// A child in the manifest: a plugin or a nested supervisor.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChildEntry {
    /// Unique among its siblings.
    pub name: String,
    /// The component file, relative to the manifest.
    #[serde(default)]
    pub plugin: Option<String>,
    /// A nested supervisor instead of a plugin.
    #[serde(default)]
    pub supervisor: Option<SupervisorEntry>,
    /// Default permanent.
    #[serde(default)]
    pub restart: Option<Restart>,
    /// "brutal_kill", "infinity" or a duration; default 5 s for plugins, infinity for
    /// supervisors.
    #[serde(default)]
    pub shutdown: Option<String>,
    /// Default false.
    #[serde(default)]
    pub significant: bool,
    /// Handed to `init` as JSON.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub config: Option<toml::Value>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Option<LimitsEntry>,
    /// Capabilities.
    #[serde(default)]
    pub grants: Option<GrantsEntry>,
    /// Delay before restarts.
    #[serde(default)]
    pub backoff: Option<BackoffEntry>,
    /// Trap kinds after which the child is not restarted.
    #[serde(default)]
    pub no_restart_on: Vec<TrapKind>,
    /// How its heartbeats are judged while it is busy; none by default.
    #[serde(default)]
    pub heartbeat: Option<HeartbeatEntry>,
    /// A circuit breaker on calls to it; none by default.
    #[serde(default)]
    pub circuit: Option<CircuitEntry>,
    /// Incarnations a sent message may crash before it is dead-lettered; default 1
    /// (as in OTP: the message that crashed the child is not tried again).
    #[serde(default)]
    pub poison_after: Option<u32>,
    /// Its durable state: quotas, and whether it is kept when the spec is dropped.
    #[serde(default)]
    pub state: Option<StateEntry>,
    /// Drop its instance after it has been idle this long (e.g. "1s", or "0s": after
    /// every message) and create it again, `init` included, for the next message.
    #[serde(default)]
    pub hibernate_after: Option<String>,
}

/// A plugin child's durable state: `{ max_bytes = "1MiB", max_keys = 1000, max_value =
/// "64KiB", keep = false }`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateEntry {
    /// Keys and values together, e.g. "1MiB"; default 64 MiB.
    #[serde(default)]
    pub max_bytes: Option<String>,
    /// Number of keys; default 100,000.
    #[serde(default)]
    pub max_keys: Option<u64>,
    /// Largest value, e.g. "64KiB"; default 1 MiB.
    #[serde(default)]
    pub max_value: Option<String>,
    /// Keep the state when the child's spec is dropped (a temporary or dynamic child
    /// that ended, `delete_child`); default false: it is removed.
    #[serde(default)]
    pub keep: bool,
}

/// A heartbeat policy: `{ timeout = "200ms" }`, or `{ detector = "phi" }` with any of
/// the φ-accrual parameters.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatEntry {
    /// "fixed" (the default, needs `timeout`) or "phi".
    #[serde(default)]
    pub detector: Option<String>,
    /// Fixed: killed after this long without a beat, e.g. "200ms".
    #[serde(default)]
    pub timeout: Option<String>,
    /// φ: the suspicion threshold; default 8.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// φ: the least standard deviation assumed; default "100ms".
    #[serde(default)]
    pub min_std_dev: Option<String>,
    /// φ: a pause accepted on top of the mean interval; default "3s".
    #[serde(default)]
    pub acceptable_pause: Option<String>,
    /// φ: intervals kept; default 1000.
    #[serde(default)]
    pub max_samples: Option<usize>,
    /// φ: the interval assumed before any is measured; default "1s".
    #[serde(default)]
    pub first_estimate: Option<String>,
}

/// A circuit breaker: `{ failures = 3, reset = "1s" }`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitEntry {
    /// Consecutive failed calls that open it (at least 1).
    pub failures: u32,
    /// How long it stays open before one probe call, e.g. "1s".
    pub reset: String,
}

/// Limits in human units.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsEntry {
    /// Linear memory, e.g. "16MiB".
    pub memory: Option<String>,
    /// CPU deadline per call, e.g. "500ms", or "none".
    pub deadline: Option<String>,
    /// Fuel per call.
    pub fuel: Option<u64>,
    /// The largest message it accepts, e.g. "64KiB"; default 1 MiB.
    pub message_size: Option<String>,
    /// Messages that may wait in its mailbox; default 1024.
    pub mailbox: Option<usize>,
    /// `send-after` timers it may have pending; default 1024.
    pub timers: Option<usize>,
    /// Bytes of payload its pending timers may hold, e.g. "1MiB"; default 4 MiB.
    pub timer_bytes: Option<String>,
    /// Bytes a second its stdout, stderr and log lines may take together (each line
    /// costs 64 bytes more), e.g. "64KiB"; past it lines are dropped, counted. Default
    /// 1 MiB.
    pub output: Option<String>,
}

/// Capabilities.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantsEntry {
    /// Directories, relative to the manifest.
    #[serde(default)]
    pub dirs: Vec<DirEntry>,
    /// Environment variables by name, with their values.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Sockets and name lookups.
    #[serde(default)]
    pub network: bool,
    /// Whom it may send to and call: paths, subtrees (`root/pool/*`) or `*`; itself
    /// always.
    #[serde(default)]
    pub targets: Vec<String>,
}

/// One granted directory.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirEntry {
    /// On the host, relative to the manifest.
    pub host: String,
    /// Where the guest sees it.
    pub guest: String,
    /// Default false.
    #[serde(default)]
    pub writable: bool,
}

/// Backoff in human units.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackoffEntry {
    /// "fixed", "linear" or "exponential".
    pub kind: String,
    /// The first delay.
    pub initial: String,
    /// Added per attempt (linear).
    #[serde(default)]
    pub step: Option<String>,
    /// The largest delay.
    #[serde(default)]
    pub max: Option<String>,
    /// Random fraction (exponential), 0 to 1.
    #[serde(default)]
    pub jitter: f64,
    /// How long a child must run for its backoff to start over; default 10 s.
    #[serde(default)]
    pub reset_after: Option<String>,
}

/// Why a manifest was refused: every problem, with its place.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.iter().map(|p| format!("{}: {p}", .file)).collect::<Vec<_>>().join("\n"))]
pub struct ManifestError {
    /// The manifest file.
    pub file: String,
    /// Every problem found.
    pub problems: Vec<String>,
}

/// The JSON schema of the manifest format (JSON Schema 2020-12), generated from the
/// types above; shipped as `docs/manifest.schema.json` and printed by `warden schema`.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Manifest)).unwrap_or_default()
}

/// Every plugin file the manifest `text` names that exists, with the place that names
/// it (`supervisor root, child "a"`), also when the manifest has other problems, so
/// `warden check` can load each and report all at once. Empty when the TOML does not
/// parse.
pub fn plugin_files(text: &str, base: &Path) -> Vec<(String, std::path::PathBuf)> {
    fn walk(path: &str, sup: &SupervisorEntry, base: &Path, out: &mut Vec<(String, PathBuf)>) {
        for child in &sup.children {
            if let Some(plugin) = &child.plugin {
                let file = base.join(plugin);
                if file.is_file() {
                    out.push((format!("supervisor {path}, child {:?}", child.name), file));
                }
            }
            if let Some(sub) = &child.supervisor {
                walk(&format!("{path}/{}", child.name), sub, base, out);
            }
        }
    }
    let mut out = Vec::new();
    if let Structure { manifest: Some(manifest), .. } = structure(text) {
        walk("root", &manifest.root, base, &mut out);
    }
    out
}

/// What deserializing a manifest found: the manifest with every entry that had a
/// problem left out (`None` if even that does not deserialize), and the problems.
struct Structure {
    manifest: Option<Manifest>,
    problems: Vec<String>,
    /// The entries left out, as the TOML path of their table (`root.children[1]`) and
    /// their key: the semantic checks of that place would only say they are missing.
    pruned: Vec<(String, String)>,
}

/// Most problems of one kind reported at once.
const MAX_PROBLEMS: usize = 100;

/// Deserializes `text`, reporting every unknown key and every value of the wrong type
/// with its line and place, not only the first: each entry serde refuses is reported
/// and left out, and the rest deserialized again.
fn structure(text: &str) -> Structure {
    let line = |span: Option<std::ops::Range<usize>>| {
        span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
    };
    let mut doc = match toml::de::DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let problem = match line(e.span()) {
                Some(n) => format!("line {n}: {}", e.message()),
                None => e.message().to_owned(),
            };
            return Structure { manifest: None, problems: vec![problem], pruned: Vec::new() };
        }
    };
    let mut problems = Vec::new();
    let mut pruned: Vec<Cut> = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        let e = match Manifest::deserialize(toml::de::Deserializer::from(doc.clone())) {
            Ok(manifest) => {
                let pruned = pruned.into_iter().map(|cut| (cut.table, cut.key)).collect();
                return Structure { manifest: Some(manifest), problems, pruned };
            }
            Err(e) => e,
        };
        // A field left out for its problem is then missing: said once is enough.
        let missing = e.message().strip_prefix("missing field `").and_then(|m| m.strip_suffix('`'));
        let repeated = |span: &std::ops::Range<usize>| {
            missing.is_some_and(|field| {
                pruned.iter().any(|cut| cut.table_span == *span && cut.key == field)
            })
        };
        let Some(span) = e.span() else {
            problems.push(e.message().to_owned());
            break;
        };
        let at = line(Some(span.clone())).unwrap_or(1);
        let doc_span = doc.span();
        let Some(cut) = prune(doc.get_mut(), doc_span, &span, String::new()) else {
            if !repeated(&span) {
                problems.push(format!("line {at}: {}", e.message()));
            }
            break;
        };
        if !repeated(&span) {
            let place = if cut.place.is_empty() { "the top level" } else { &cut.place };
            let message = match e.message() {
                // toml's words for any value that is not a name, for a field of names.
                "wanted string or table" => format!("invalid type: {}, expected a name", cut.found),
                other => other.to_owned(),
            };
            problems.push(format!("line {at}, {place}: {message}"));
        }
        pruned.push(cut);
    }
    Structure { manifest: None, problems, pruned: Vec::new() }
}

/// An entry left out of the document.
struct Cut {
    /// Where it was, e.g. `root.children[1].limits.memroy`.
    place: String,
    /// The table it was in, and that table's span.
    table: String,
    table_span: std::ops::Range<usize>,
    key: String,
    /// The type of what was left out (`integer`, `table`, ...).
    found: &'static str,
}

/// Removes the entry of `table` (at `place`, spanning `table_span`), at any depth,
/// that `span` points at: a key or a value covering it, or a table or array element
/// whose span is it (a table's span is its header, or the whole of an inline table).
fn prune(
    table: &mut toml::de::DeTable<'_>,
    table_span: std::ops::Range<usize>,
    span: &std::ops::Range<usize>,
    place: String,
) -> Option<Cut> {
    use toml::de::DeValue;
    let covers = |s: std::ops::Range<usize>| s.start <= span.start && span.end <= s.end;
    let keys: Vec<String> = table.keys().map(|k| k.get_ref().to_string()).collect();
    for key in keys {
        let here = if place.is_empty() { key.clone() } else { format!("{place}.{key}") };
        let (key_span, value) = match table.get_key_value(key.as_str()) {
            Some((k, v)) => (k.span(), v.span()),
            None => continue,
        };
        let entry = table.get_mut(key.as_str()).expect("listed above");
        let hit = covers(key_span)
            || value == *span
            || (covers(value.clone())
                && !matches!(entry.get_ref(), DeValue::Table(_) | DeValue::Array(_)));
        if !hit {
            let found = match entry.get_mut() {
                DeValue::Table(inner) => prune(inner, value.clone(), span, here.clone()),
                DeValue::Array(items) => prune_item(items, value.clone(), span, &here, &key),
                _ => None,
            };
            if found.is_some() {
                return found;
            }
            continue;
        }
        let found = table.remove(key.as_str()).map_or("nothing", |v| v.get_ref().type_str());
        return Some(Cut { place: here, table: place, table_span, key, found });
    }
    None
}

/// [`prune`] in an array: an element `span` points at, or an entry inside one.
fn prune_item(
    items: &mut toml::de::DeArray<'_>,
    array_span: std::ops::Range<usize>,
    span: &std::ops::Range<usize>,
    place: &str,
    key: &str,
) -> Option<Cut> {
    use toml::de::DeValue;
    let covers = |s: std::ops::Range<usize>| s.start <= span.start && span.end <= s.end;
    for i in 0..items.len() {
        let at = format!("{place}[{i}]");
        let item_span = items[i].span();
        let nested = matches!(items[i].get_ref(), DeValue::Table(_) | DeValue::Array(_));
        if item_span != *span && (nested || !covers(item_span.clone())) {
            let found = match items.as_mut()[i].get_mut() {
                DeValue::Table(inner) => prune(inner, item_span, span, at),
                DeValue::Array(inner) => prune_item(inner, item_span, span, &at, key),
                _ => None,
            };
            if found.is_some() {
                return found;
            }
            continue;
        }
        let found = items[i].get_ref().type_str();
        // `DeArray` cannot remove: keep the others.
        let mut kept = toml::de::DeArray::new();
        for (j, item) in items.iter().enumerate() {
            if j != i {
                kept.push(item.clone());
            }
        }
        *items = kept;
        let (table, key) = (place.to_owned(), key.to_owned());
        return Some(Cut { place: at, table, table_span: array_span, key, found });
    }
    None
}

/// Reads and checks the manifest at `path`.
///
/// # Errors
/// Every problem, with the file and the place.
pub fn load(path: &Path) -> Result<SupervisorSpec, ManifestError> {
    load_with_settings(path).map(|(spec, _)| spec)
}

/// Reads and checks the manifest at `path`: its tree and its other settings.
///
/// # Errors
/// Every problem, with the file and the place.
pub fn load_with_settings(path: &Path) -> Result<(SupervisorSpec, Settings), ManifestError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
        file: file.clone(),
        problems: vec![format!("cannot read: {e}")],
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_with_settings(&file, &text, base)
}

/// Checks manifest `text` (named `file` in errors); plugin paths are relative to `base`.
///
/// # Errors
/// Every problem, with the file and the place (and the line, for TOML errors).
pub fn parse(file: &str, text: &str, base: &Path) -> Result<SupervisorSpec, ManifestError> {
    parse_with_settings(file, text, base).map(|(spec, _)| spec)
}

/// [`parse`], with the manifest's other settings.
///
/// # Errors
/// Every problem, with the file and the place (and the line, for TOML errors).
pub fn parse_with_settings(
    file: &str,
    text: &str,
    base: &Path,
) -> Result<(SupervisorSpec, Settings), ManifestError> {
    let refuse = |problems| ManifestError { file: file.to_owned(), problems };
    let Structure { manifest, mut problems, pruned } = structure(text);
    let Some(manifest) = manifest else { return Err(refuse(problems)) };
    let mut semantic = Vec::new();
    let spec = supervisor("root", &manifest.root, base, &mut semantic);
    if pruned.is_empty() {
        semantic.extend(validate("root", &spec).iter().map(SpecError::to_string));
    }
    // Where an entry was left out for its problem, that it is missing now is no news.
    let tainted = |p: &String| {
        pruned.iter().any(|(table, key)| {
            let place = place_of(&manifest, table);
            p.strip_prefix(place.as_str()).is_some_and(|rest| rest.starts_with(':'))
                && p.contains(&format!("`{key}`"))
        })
    };
    problems.extend(semantic.into_iter().filter(|p| !tainted(p)));
    let settings = Settings { data_dir: manifest.data_dir.as_ref().map(|dir| base.join(dir)) };
    if problems.is_empty() { Ok((spec, settings)) } else { Err(refuse(problems)) }
}

/// The place (`supervisor root, child "a"`) of the manifest table at TOML path `table`
/// (`root.children[0]`), as the semantic checks name it.
fn place_of(manifest: &Manifest, table: &str) -> String {
    let mut place = String::from("supervisor root");
    let mut path = String::from("root");
    let mut sup = &manifest.root;
    let mut rest = table.strip_prefix("root").unwrap_or(table);
    while let Some(after) = rest.strip_prefix(".children[") {
        let Some((index, tail)) = after.split_once(']') else { break };
        let Some(child) = index.parse::<usize>().ok().and_then(|i| sup.children.get(i)) else {
            break;
        };
        place = format!("supervisor {path}, child {:?}", child.name);
        rest = tail;
        match (&child.supervisor, rest.strip_prefix(".supervisor")) {
            (Some(sub), Some(tail)) => {
                path = format!("{path}/{}", child.name);
                place = format!("supervisor {path}");
                sup = sub;
                rest = tail;
            }
            _ => break,
        }
    }
    place
}

fn supervisor(
    path: &str,
    entry: &SupervisorEntry,
    base: &Path,
    problems: &mut Vec<String>,
) -> SupervisorSpec {
    let here = format!("supervisor {path}");
    let mut spec = SupervisorSpec::new(entry.strategy, Vec::new());
    match u32::try_from(entry.intensity) {
        Ok(n) => spec.intensity = n,
        Err(_) => problems.push(format!(
            "{here}: intensity must be a whole number from 0, not {}",
            entry.intensity
        )),
    }
    if let Some(period) = &entry.period {
        match duration(period) {
            Ok(d) => spec.period = d,
            Err(e) => problems.push(format!("{here}: period: {e}")),
        }
    }
    spec.auto_shutdown = entry.auto_shutdown;
    let inherited = entry.backoff.as_ref().map(|b| {
        let mut problem = |p: String| problems.push(format!("{here}: {p}"));
        backoff(b, &mut problem)
    });
    for child in &entry.children {
        if let Some(mut spec_child) = child_spec(path, child, base, problems) {
            if let (None, Some((backoff, reset))) = (&child.backoff, inherited) {
                spec_child.backoff = backoff;
                if let Some(reset) = reset {
                    spec_child.backoff_reset = reset;
                }
            }
            spec.children.push(spec_child);
        }
    }
    spec
}

/// A child spec from a manifest child entry (e.g. a `start_child` command's `spec`),
/// under the supervisor at `parent`, with plugin paths relative to `base`.
///
/// # Errors
/// Every problem with the entry.
pub fn child(parent: &str, entry: &ChildEntry, base: &Path) -> Result<ChildSpec, Vec<String>> {
    let mut problems = Vec::new();
    let spec = child_spec(parent, entry, base, &mut problems);
    match spec {
        Some(spec) if problems.is_empty() => Ok(spec),
        _ => Err(problems),
    }
}

fn child_spec(
    parent: &str,
    entry: &ChildEntry,
    base: &Path,
    problems: &mut Vec<String>,
) -> Option<ChildSpec> {
    let here = format!("supervisor {parent}, child {:?}", entry.name);
    let mut problem = |p: String| problems.push(format!("{here}: {p}"));
    let mut spec = match (&entry.plugin, &entry.supervisor) {
        (Some(plugin), None) => {
            let config = match &entry.config {
                Some(value) => serde_json::to_vec(value).unwrap_or_default(),
                None => Vec::new(),
            };
            let plugin_path = base.join(plugin);
            if !plugin_path.is_file() {
                problem(format!("plugin file {} not found", plugin_path.display()));
            }
            let mut limits = ChildLimits::default();
            if let Some(l) = &entry.limits {
                if let Some(memory) = &l.memory {
                    match bytes(memory) {
                        Ok(n) if n > MAX_MEMORY => problem(format!(
                            "limits.memory: {memory:?} is more than a 32-bit wasm memory can \
                             hold, 4GiB"
                        )),
                        Ok(n) => limits.max_memory_bytes = n,
                        Err(e) => problem(format!("limits.memory: {e}")),
                    }
                }
                if let Some(deadline) = &l.deadline {
                    if deadline == "none" {
                        limits.call_deadline = None;
                    } else {
                        match duration(deadline) {
                            Ok(d) => limits.call_deadline = Some(d),
                            Err(e) => problem(format!("limits.deadline: {e}")),
                        }
                    }
                }
                limits.fuel_per_call = l.fuel;
                if let Some(output) = &l.output {
                    match bytes(output) {
                        Ok(n) => limits.output_per_second = n,
                        Err(e) => problem(format!("limits.output: {e}")),
                    }
                }
            }
            let mut mailbox = MailboxConfig::default();
            if let Some(l) = &entry.limits {
                if let Some(size) = &l.message_size {
                    match bytes(size) {
                        Ok(n) => mailbox.max_message_bytes = n,
                        Err(e) => problem(format!("limits.message_size: {e}")),
                    }
                }
                match l.mailbox {
                    Some(0) => problem("limits.mailbox must be at least 1".into()),
                    Some(n) => mailbox.capacity = n,
                    None => {}
                }
                if let Some(n) = l.timers {
                    mailbox.timers.max_timers = n;
                }
                if let Some(size) = &l.timer_bytes {
                    match bytes(size) {
                        Ok(n) => mailbox.timers.max_bytes = n,
                        Err(e) => problem(format!("limits.timer_bytes: {e}")),
                    }
                }
            }
            if let Some(n) = entry.poison_after {
                if n == 0 {
                    problem("poison_after must be at least 1".into());
                }
                mailbox.poison_after = n.max(1);
            }
            if let Some(targets) = entry.grants.as_ref().map(|g| &g.targets) {
                match Targets::new(targets.iter().cloned()) {
                    Ok(t) => mailbox.targets = t,
                    Err(e) => problem(format!("grants.targets: {e}")),
                }
            }
            if let Some(c) = &entry.circuit {
                if c.failures == 0 {
                    problem("circuit.failures must be at least 1".into());
                }
                match duration(&c.reset) {
                    Ok(reset) => {
                        mailbox.circuit =
                            Some(CircuitConfig { failures: c.failures.max(1), reset });
                    }
                    Err(e) => problem(format!("circuit.reset: {e}")),
                }
            }
            if let Some(h) = &entry.heartbeat {
                match heartbeat(h) {
                    Ok(policy) => limits.heartbeat = Some(policy),
                    Err(e) => problem(format!("heartbeat: {e}")),
                }
            }
            let mut keep_state = false;
            if let Some(st) = &entry.state {
                keep_state = st.keep;
                let quota = &mut limits.state;
                if let Some(max) = &st.max_bytes {
                    match bytes(max) {
                        Ok(n) => quota.max_bytes = n as u64,
                        Err(e) => problem(format!("state.max_bytes: {e}")),
                    }
                }
                if let Some(n) = st.max_keys {
                    quota.max_keys = n;
                }
                if let Some(max) = &st.max_value {
                    match bytes(max) {
                        Ok(n) => quota.max_value_bytes = n as u64,
                        Err(e) => problem(format!("state.max_value: {e}")),
                    }
                }
            }
            let hibernate_after = match entry.hibernate_after.as_deref().map(duration) {
                Some(Ok(d)) => Some(d),
                Some(Err(e)) => {
                    problem(format!("hibernate_after: {e}"));
                    None
                }
                None => None,
            };
            let mut grants = Grants::default();
            if let Some(g) = &entry.grants {
                grants.network = g.network;
                grants.env = g.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                grants.dirs = g
                    .dirs
                    .iter()
                    .map(|d| DirGrant {
                        host: base.join(&d.host),
                        guest: d.guest.clone(),
                        writable: d.writable,
                    })
                    .collect();
            }
            ChildSpec::plugin(
                &entry.name,
                PluginStart {
                    plugin: plugin_path,
                    config,
                    limits,
                    grants,
                    mailbox,
                    keep_state,
                    hibernate_after,
                },
            )
        }
        (None, Some(sub)) => {
            if entry.state.is_some() {
                problem("`state` is a plugin's setting; a supervisor keeps no state".into());
            }
            if entry.hibernate_after.is_some() {
                problem("`hibernate_after` is a plugin's setting, not a supervisor's".into());
            }
            let sub_path = format!("{parent}/{}", entry.name);
            let sub = supervisor(&sub_path, sub, base, problems);
            ChildSpec::supervisor(&entry.name, sub)
        }
        (Some(_), Some(_)) => {
            problem("has both `plugin` and `supervisor`; a child is one or the other".into());
            return None;
        }
        (None, None) => {
            problem("needs `plugin` (a component file) or `supervisor` (a nested tree)".into());
            return None;
        }
    };
    let mut problem = |p: String| problems.push(format!("{here}: {p}"));
    if let Some(restart) = entry.restart {
        spec.restart = restart;
    }
    if let Some(shutdown) = &entry.shutdown {
        spec.shutdown = match shutdown.as_str() {
            "brutal_kill" => Shutdown::BrutalKill,
            "infinity" => Shutdown::Infinity,
            other => match duration(other) {
                Ok(d) => Shutdown::Timeout(d),
                Err(e) => {
                    problem(format!("shutdown: {e} (or \"brutal_kill\", \"infinity\")"));
                    spec.shutdown
                }
            },
        };
    }
    spec.significant = entry.significant;
    spec.no_restart_on.clone_from(&entry.no_restart_on);
    if let Some(b) = &entry.backoff {
        let (backoff, reset) = backoff(b, &mut problem);
        spec.backoff = backoff;
        if let Some(reset) = reset {
            spec.backoff_reset = reset;
        }
    }
    Some(spec)
}

/// A backoff entry as a [`Backoff`] and its reset period, if it sets one.
fn backoff(b: &BackoffEntry, problem: &mut dyn FnMut(String)) -> (Backoff, Option<Duration>) {
    let mut d = |field: &str, value: &Option<String>| {
        value.as_deref().map(duration).transpose().unwrap_or_else(|e| {
            problem(format!("backoff.{field}: {e}"));
            None
        })
    };
    let initial = d("initial", &Some(b.initial.clone())).unwrap_or_default();
    let max = d("max", &b.max).unwrap_or(Duration::from_secs(60));
    let step = d("step", &b.step).unwrap_or(initial);
    let reset = d("reset_after", &b.reset_after);
    let backoff = match b.kind.as_str() {
        "fixed" => Backoff::Fixed(initial),
        "linear" => Backoff::Linear { initial, step, max },
        "exponential" => {
            if !(0.0..=1.0).contains(&b.jitter) {
                problem(format!("backoff.jitter must be from 0 to 1, not {}", b.jitter));
            }
            Backoff::Exponential { initial, max, jitter: b.jitter }
        }
        other => {
            problem(format!("backoff.kind: {other:?} is not fixed, linear or exponential"));
            Backoff::None
        }
    };
    (backoff, reset)
}

fn heartbeat(entry: &HeartbeatEntry) -> Result<HeartbeatPolicy, String> {
    let d = |name: &str, value: &Option<String>| {
        value.as_deref().map(duration).transpose().map_err(|e| format!("{name}: {e}"))
    };
    match entry.detector.as_deref().unwrap_or("fixed") {
        "fixed" => {
            let phi_keys = [
                entry.threshold.is_some(),
                entry.min_std_dev.is_some(),
                entry.acceptable_pause.is_some(),
                entry.max_samples.is_some(),
                entry.first_estimate.is_some(),
            ];
            if phi_keys.iter().any(|&set| set) {
                return Err("threshold, min_std_dev, acceptable_pause, max_samples and \
                     first_estimate are for detector = \"phi\""
                    .into());
            }
            let timeout = d("timeout", &entry.timeout)?
                .ok_or("a fixed heartbeat needs `timeout`, e.g. timeout = \"200ms\"")?;
            if timeout.is_zero() {
                return Err("timeout must be more than 0".into());
            }
            Ok(HeartbeatPolicy::Timeout(timeout))
        }
        "phi" => {
            if entry.timeout.is_some() {
                return Err("`timeout` is for the fixed detector; phi adapts to the beats".into());
            }
            let mut phi = PhiAccrual::default();
            if let Some(t) = entry.threshold {
                if !(t.is_finite() && t > 0.0) {
                    return Err(format!("threshold must be a positive number, not {t}"));
                }
                phi.threshold = t;
            }
            if let Some(v) = d("min_std_dev", &entry.min_std_dev)? {
                phi.min_std_dev = v;
            }
            if let Some(v) = d("acceptable_pause", &entry.acceptable_pause)? {
                phi.acceptable_pause = v;
            }
            if let Some(v) = d("first_estimate", &entry.first_estimate)? {
                phi.first_estimate = v;
            }
            if let Some(n) = entry.max_samples {
                if n == 0 {
                    return Err("max_samples must be at least 1".into());
                }
                phi.max_samples = n;
            }
            Ok(HeartbeatPolicy::PhiAccrual(phi))
        }
        other => Err(format!("detector {other:?} is not \"fixed\" or \"phi\"")),
    }
}

/// The largest memory limit: a 32-bit wasm memory holds at most 4 GiB.
const MAX_MEMORY: usize = 4 << 30;

/// The longest duration a manifest may give: longer ones are refused, not clamped,
/// so a typo does not silently mean "never".
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// "500ms", "5s", "1m 30s"; at most [`MAX_DURATION`].
fn duration(text: &str) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration ({e})"))?;
    if d > MAX_DURATION {
        return Err(format!("{text:?} is longer than the longest allowed, 365 days"));
    }
    Ok(d)
}

/// "64KiB", "16MiB", "1GiB", "1000" (bytes).
fn bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("{text:?}: unknown unit {other:?} (use B, KiB, MiB or GiB)")),
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?} is not a size"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::PluginStart;

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let text = r#"
[root]
strategy = "one_for_one"
intensity = -1

[[root.children]]
name = "a"
plugin = "missing.wasm"
restart = "permanent"
significant = true
limits = { memory = "16 parsecs" }

[[root.children]]
name = "a"
supervisor = { strategy = "one_for_all", period = "soon" }
"#;
        let err = parse("tree.toml", text, Path::new("/nonexistent")).unwrap_err();
        let all = err.to_string();
        for expected in [
            "tree.toml: supervisor root: intensity must be a whole number from 0, not -1",
            "supervisor root, child \"a\": plugin file /nonexistent/missing.wasm not found",
            "supervisor root, child \"a\": limits.memory: \"16 parsecs\": unknown unit",
            "supervisor root/a: period: \"soon\" is not a duration",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        assert!(all.contains("significant is true but the supervisor's auto_shutdown is never"));
        assert!(all.contains("duplicate child id"));
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_line() {
        let err =
            parse("t.toml", "[root]\nstrategy = \"one_for_one\"\ncolour = 1\n", Path::new("."))
                .unwrap_err();
        assert!(
            err.to_string().starts_with("t.toml: line 3, root.colour: unknown field `colour`"),
            "{err}"
        );
        let err = parse("t.toml", "[root]\nstrategy = 7\n", Path::new(".")).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(
            err.to_string()
                .contains("line 2, root.strategy: invalid type: integer, expected a name"),
            "{err}"
        );
        let err = parse("t.toml", "[root\nstrategy = 7\n", Path::new(".")).unwrap_err();
        assert!(err.to_string().starts_with("t.toml: line 1: "), "a syntax error: {err}");
    }

    #[test]
    fn every_unknown_key_and_wrong_type_is_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"").unwrap();
        let text = r#"
[root]
strategy = "one_for_one"
colour = "blue"

[[root.children]]
name = "a"
plugin = "p.wasm"
limits = { memroy = "16MiB" }

[[root.children]]
name = "b"
plugin = "p.wasm"
restart = 5
shutdown = "soon"

[[root.children]]
name = "c"
plugin = "p.wasm"
circuit = { failures = 1, reset = "500000000000y" }

[[root.children]]
name = "d"
supervisor = { strategy = "one_for_all", children = [{ name = "e", plugin = "p.wasm", poison = 2 }] }
"#;
        let err = parse("t.toml", text, dir.path()).unwrap_err();
        let all = err.to_string();
        for expected in [
            "t.toml: line 4, root.colour: unknown field `colour`",
            "t.toml: line 9, root.children[0].limits.memroy: unknown field `memroy`",
            "t.toml: line 14, root.children[1].restart: invalid type: integer, expected a name",
            "t.toml: supervisor root, child \"b\": shutdown: \"soon\" is not a duration",
            "t.toml: supervisor root, child \"c\": circuit.reset: \"500000000000y\" is longer than \
             the longest allowed, 365 days",
            "root.children[3].supervisor.children[0].poison: unknown field `poison`",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        assert_eq!(err.problems.len(), 6, "nothing more, nothing twice:\n{all}");
    }

    #[test]
    fn a_field_left_out_for_its_problem_is_not_reported_missing_as_well() {
        let text = "[root]\nstrategy = \"one_for_sixteen\"\n";
        let err = parse("t.toml", text, Path::new(".")).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(err.problems[0].starts_with("line 2, root.strategy: unknown variant"), "{err}");
    }

    fn only_child(spec: &SupervisorSpec) -> &PluginStart {
        match &spec.children[0].start {
            crate::supervisor::ChildStart::Plugin(p) => p,
            other => panic!("not a plugin: {other:?}"),
        }
    }

    #[test]
    fn messaging_and_heartbeat_settings() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"").unwrap();
        let text = r#"
[root]
strategy = "one_for_one"

[[root.children]]
name = "a"
plugin = "p.wasm"
limits = { message_size = "64KiB", mailbox = 8 }
grants = { targets = ["root/b", "root/pool/*"] }
heartbeat = { detector = "phi", threshold = 6.5, acceptable_pause = "0s" }
circuit = { failures = 2, reset = "250ms" }
poison_after = 5
"#;
        let spec = parse("t.toml", text, dir.path()).unwrap();
        let a = only_child(&spec);
        assert_eq!(a.mailbox.max_message_bytes, 64 << 10);
        assert_eq!(a.mailbox.capacity, 8);
        assert_eq!(a.mailbox.poison_after, 5);
        assert!(a.mailbox.targets.allows("root/a", "root/pool/w1"));
        assert!(!a.mailbox.targets.allows("root/a", "root/c"));
        assert_eq!(
            a.mailbox.circuit,
            Some(CircuitConfig { failures: 2, reset: Duration::from_millis(250) })
        );
        assert_eq!(
            a.limits.heartbeat,
            Some(HeartbeatPolicy::PhiAccrual(PhiAccrual {
                threshold: 6.5,
                acceptable_pause: Duration::ZERO,
                ..PhiAccrual::default()
            }))
        );

        let bad = text
            .replace(r#"detector = "phi", threshold = 6.5, acceptable_pause = "0s""#, "")
            .replace(r#""root/pool/*""#, r#""root/*/x""#)
            .replace("failures = 2", "failures = 0")
            .replace("mailbox = 8", "mailbox = 0");
        let all = parse("t.toml", &bad, dir.path()).unwrap_err().to_string();
        for expected in [
            "supervisor root, child \"a\": heartbeat: a fixed heartbeat needs `timeout`",
            "supervisor root, child \"a\": grants.targets: \"root/*/x\" is not a target",
            "supervisor root, child \"a\": circuit.failures must be at least 1",
            "supervisor root, child \"a\": limits.mailbox must be at least 1",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn a_supervisor_backoff_is_the_default_of_its_children() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"").unwrap();
        let text = r#"
[root]
strategy = "one_for_one"
backoff = { kind = "fixed", initial = "250ms", reset_after = "1m" }

[[root.children]]
name = "inherits"
plugin = "p.wasm"

[[root.children]]
name = "own"
plugin = "p.wasm"
backoff = { kind = "linear", initial = "10ms" }
"#;
        let spec = parse("t.toml", text, dir.path()).unwrap();
        let (inherits, own) = (&spec.children[0], &spec.children[1]);
        assert_eq!(inherits.backoff, Backoff::Fixed(Duration::from_millis(250)));
        assert_eq!(inherits.backoff_reset, Duration::from_secs(60));
        assert_eq!(
            own.backoff,
            Backoff::Linear {
                initial: Duration::from_millis(10),
                step: Duration::from_millis(10),
                max: Duration::from_secs(60)
            }
        );
        let bad = text.replace("\"fixed\", initial = \"250ms\"", "\"fixed\", initial = \"soon\"");
        let err = parse("t.toml", &bad, dir.path()).unwrap_err().to_string();
        assert!(err.contains("t.toml: supervisor root: backoff.initial: \"soon\""), "{err}");
    }

    #[test]
    fn human_units() {
        assert_eq!(bytes("16MiB"), Ok(16 << 20));
        assert_eq!(bytes("64KiB"), Ok(64 << 10));
        assert_eq!(bytes("1000"), Ok(1000));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(duration("5 parsecs").is_err());
    }
}
