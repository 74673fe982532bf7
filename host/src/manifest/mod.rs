//! The TOML manifest: a supervision tree as plain serde data, turned into a
//! [`SupervisorSpec`] with every problem reported at its place.
//!
//! ```text
//!   TOML text ──structure──▶ entries (serde; every unknown key and wrong type, each
//!                 │           with its line, the offending entry left out)
//!                 ▼
//!   entries ──build──▶ SupervisorSpec (human units checked) ──validate──▶ OTP's rules
//! ```
//!
//! Every problem is a [`Problem`] (its kind, place, line and message), rendered once.
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
//!            mailbox_bytes = "16MiB", timers = 1024, timer_bytes = "4MiB", output = "1MiB" }
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

mod build;
mod entries;
mod problem;
mod structure;
mod units;

pub use entries::{
    BackoffEntry, ChildEntry, CircuitEntry, DirEntry, GrantsEntry, HeartbeatEntry, LimitsEntry,
    Manifest, Settings, StateEntry, SupervisorEntry,
};
pub use problem::{Problem, ProblemKind};
pub use units::{MAX_DURATION, size};

use crate::spec::{ChildSpec, SupervisorSpec, validate};
use build::Builder;
use std::path::{Path, PathBuf};
use structure::{Structure, place_of, structure};

/// Why a manifest was refused: every problem, with its place.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.iter().map(|p| format!("{}: {p}", .file)).collect::<Vec<_>>().join("\n"))]
pub struct ManifestError {
    /// The manifest file.
    pub file: String,
    /// Every problem found.
    pub problems: Vec<Problem>,
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
        problems: vec![Problem::new(ProblemKind::Syntax, "", format!("cannot read: {e}"))],
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
    let mut builder = Builder::new(base);
    let spec = builder.supervisor("root", &manifest.root);
    let mut semantic = builder.problems;
    if pruned.is_empty() {
        let rules = validate("root", &spec).into_iter();
        semantic.extend(
            rules.map(|e| Problem::new(ProblemKind::Rule, e.place(), e.problem.to_string())),
        );
    }
    // Where an entry was left out for its problem, that it is missing now is no news.
    let tainted = |p: &Problem| {
        pruned.iter().any(|(table, key)| {
            p.place == place_of(&manifest, table) && p.message.contains(&format!("`{key}`"))
        })
    };
    problems.extend(semantic.into_iter().filter(|p| !tainted(p)));
    let settings = Settings { data_dir: manifest.data_dir.as_ref().map(|dir| base.join(dir)) };
    if problems.is_empty() { Ok((spec, settings)) } else { Err(refuse(problems)) }
}

/// A child spec from a manifest child entry (e.g. a `start_child` command's `spec`),
/// under the supervisor at `parent`, with plugin paths relative to `base`.
///
/// # Errors
/// Every problem with the entry.
pub fn child(parent: &str, entry: &ChildEntry, base: &Path) -> Result<ChildSpec, Vec<Problem>> {
    let mut builder = Builder::new(base);
    let spec = builder.child(parent, entry);
    match spec {
        Some(spec) if builder.problems.is_empty() => Ok(spec),
        _ => Err(builder.problems),
    }
}

#[cfg(test)]
mod tests {
    use super::units::{bytes, duration};
    use super::*;
    use crate::spec::{Backoff, CircuitConfig, HeartbeatPolicy, Network, PhiAccrual, PluginStart};
    use std::time::Duration;

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
        let problem = &err.problems[0];
        assert!(problem.to_string().starts_with("line 2, root.strategy: unknown variant"), "{err}");
        assert_eq!(
            (problem.kind, problem.line, problem.place.as_str()),
            (ProblemKind::BadValue, Some(2), "root.strategy")
        );
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
limits = { message_size = "64KiB", mailbox = 8, mailbox_bytes = "256KiB" }
grants = { targets = ["root/b", "root/pool/*"] }
heartbeat = { detector = "phi", threshold = 6.5, acceptable_pause = "0s" }
circuit = { failures = 2, reset = "250ms" }
poison_after = 5
"#;
        let spec = parse("t.toml", text, dir.path()).unwrap();
        let a = only_child(&spec);
        assert_eq!(a.mailbox.max_message_bytes, 64 << 10);
        assert_eq!(a.mailbox.capacity, 8);
        assert_eq!(a.mailbox.max_queued_bytes, 256 << 10);
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
    fn network_grants_are_everything_nothing_or_rules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"").unwrap();
        let manifest = |network: &str| {
            format!(
                "[root]\nstrategy = \"one_for_one\"\n[[root.children]]\nname = \"a\"\n\
                 plugin = \"p.wasm\"\ngrants = {{ network = {network} }}\n"
            )
        };
        let network = |text: &str| {
            let spec = parse("t.toml", &manifest(text), dir.path()).unwrap();
            only_child(&spec).grants.network.clone()
        };
        assert_eq!(network("true"), Network::Any);
        assert_eq!(network("false"), Network::None);
        let rules = network(r#"["tcp:127.0.0.1:8080", "10.0.0.0/8:443-444", "dns"]"#);
        let Network::Only(rules) = rules else { panic!("{rules:?}") };
        let printed: Vec<String> = rules.iter().map(ToString::to_string).collect();
        assert_eq!(printed, ["tcp:127.0.0.1:8080", "10.0.0.0/8:443-444", "dns"]);

        let all =
            parse("t.toml", &manifest(r#"["localhost:80", "dns", "1.2.3.4:9-8"]"#), dir.path())
                .unwrap_err()
                .to_string();
        for expected in [
            "supervisor root, child \"a\": grants.network[0]: \"localhost:80\" is not a network rule (not an IP address)",
            "supervisor root, child \"a\": grants.network[2]: \"1.2.3.4:9-8\" is not a network rule (ports in the wrong order)",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        let wrong = parse("t.toml", &manifest(r#""any""#), dir.path()).unwrap_err().to_string();
        assert!(
            wrong.contains("line 6") && wrong.contains("true, false, or a list of rules"),
            "{wrong}"
        );
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
