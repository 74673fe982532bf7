//! The run's HTTP side from outside: Prometheus metrics, and the live view in a real
//! headless browser (Debian's Chromium).

use crate::common::{Running, cmd, manifest};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use warden_tests::browser::Browser;

const TREE: &str = r#"
[root]
strategy = "one_for_one"
intensity = 5

[[root.children]]
name = "group"
supervisor = { strategy = "one_for_all", intensity = 3, period = "10s", children = [
    { name = "a", plugin = "CHAOS" },
    { name = "b", plugin = "CHAOS", heartbeat = { timeout = "2s" } },
] }

[[root.children]]
name = "echo"
plugin = "ECHO"
"#;

/// A run with its HTTP side on free ports, and where it said they are.
struct Served {
    warden: Running,
    socket: PathBuf,
    metrics: String,
    view: String,
    token: String,
}

fn serve() -> (tempfile::TempDir, Served) {
    let (dir, path) = manifest(TREE);
    let socket = dir.path().join("ctl.sock");
    let mut warden = Running::spawn(
        cmd()
            .args(["run", path.to_str().unwrap(), "--events", "jsonl", "--in-memory"])
            .args(["--metrics", "127.0.0.1:0", "--http", "127.0.0.1:0", "--control"])
            .arg(&socket)
            .stderr(std::process::Stdio::piped()),
    );
    let mut said = BufReader::new(warden.take_stderr()).lines();
    let (mut metrics, mut view, mut seen) = (None, None, Vec::new());
    while metrics.is_none() || view.is_none() {
        let line = said
            .next()
            .unwrap_or_else(|| panic!("the run says where it serves: {seen:?}"))
            .unwrap();
        seen.push(line.clone());
        if let Some(url) = line.strip_prefix("warden: metrics at ") {
            metrics = Some(url.to_owned());
        }
        if let Some(url) = line.strip_prefix("warden: live view at ") {
            view = Some(url.to_owned());
        }
    }
    let view = view.unwrap();
    let (view, token) = view.split_once("?token=").expect("the token is in the view's address");
    let (view, token) = (view.to_owned(), token.to_owned());
    warden.expect("echo started", |e| e["event"] == "child_started" && e["path"] == "root/echo");
    (dir, Served { warden, socket, metrics: metrics.unwrap(), view, token })
}

/// A plain HTTP/1.1 request: the status and the body.
fn request(url: &str, method: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) =
        rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream.set_read_timeout(Some(crate::common::DEADLINE)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    stream.write_all(format!("{head}\r\n{body}").as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn ctl(socket: &std::path::Path, args: &[&str]) -> std::process::Output {
    cmd().arg("ctl").arg("--socket").arg(socket).args(args).output().unwrap()
}

#[test]
fn metrics_follow_prometheus_conventions_and_count_what_happened() {
    let (_dir, mut served) = serve();
    ctl(&served.socket, &["call", "root/echo", "hi"]);
    ctl(&served.socket, &["call", "root/group/a", "trap"]);
    // one_for_all restarts a, then b: the group is whole again once b has started
    // (reading the metrics after a's start alone found b's instance not yet live).
    served
        .warden
        .expect("a restarted", |e| e["event"] == "child_started" && e["path"] == "root/group/a");
    served
        .warden
        .expect("b restarted", |e| e["event"] == "child_started" && e["path"] == "root/group/b");
    let (status, text) = request(&served.metrics, "GET", &[], "");
    assert_eq!(status, 200);
    for line in [
        "# TYPE warden_child_restarts counter",
        "warden_child_restarts_total{path=\"root/group/a\"} 1",
        "warden_child_restarts_total{path=\"root/group/b\"} 1",
        "warden_child_exits_total{path=\"root/group/a\",reason=\"trap:unreachable\"} 1",
        "warden_child_exits_total{path=\"root/group/b\",reason=\"shutdown\"} 1",
        "warden_child_incarnation{path=\"root/group/a\"} 2",
        "warden_child_up{path=\"root/group/a\"} 1",
        "warden_child_messages_handled_total{path=\"root/echo\"} 1",
        "warden_child_messages_failed_total{path=\"root/group/a\"} 1",
        "warden_child_handle_seconds_count{path=\"root/echo\"} 1",
        "warden_child_handle_seconds_bucket{le=\"+Inf\",path=\"root/echo\"} 1",
        "warden_child_mailbox_depth{path=\"root/echo\"} 0",
        "warden_child_mailbox_bytes{path=\"root/echo\"} 0",
        "warden_child_heartbeat_silence_seconds{path=\"root/group/b\"} 0.0",
        "warden_supervisor_restarts_in_period{path=\"root/group\"} 1",
        "warden_supervisor_intensity{path=\"root/group\"} 3",
        "warden_instances 3",
        "warden_messages_handled_total 1",
        "# EOF",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    served.warden.command(r#"{"cmd":"shutdown"}"#);
    assert_eq!(served.warden.exit_code(), 0);
}

#[test]
fn the_live_view_shows_the_tree_follows_a_crash_and_guards_its_admin_actions() {
    if std::env::var("WARDEN_BROWSER").is_ok_and(|v| v == "skip") {
        eprintln!("skipped: WARDEN_BROWSER=skip");
        return;
    }
    let (_dir, mut served) = serve();
    let mut browser = Browser::start().unwrap();
    browser.goto(&served.view).unwrap();
    let row = |path: &str| format!("document.querySelector('tr[data-path=\"{path}\"]')");
    let shows = |path: &str, incarnation: u64| {
        format!("{}?.dataset.incarnation === '{incarnation}'", row(path))
    };
    let second = Duration::from_secs(1);
    assert!(
        browser.wait_for(&shows("root/group/b", 1), Duration::from_secs(10)).unwrap(),
        "the tree is shown"
    );
    let text: String =
        serde_json::from_value(browser.eval("document.body.innerText").unwrap()).unwrap();
    assert!(text.contains("one_for_all") && text.contains("root/group"), "{text}");

    // A crash injected through the control socket is on the page within a second.
    let crashed = Instant::now();
    ctl(&served.socket, &["send", "root/group/b", "trap"]);
    assert!(browser.wait_for(&shows("root/group/b", 2), second).unwrap(), "the restart is shown");
    let logged = "[...document.querySelectorAll('#log .ev')].some(e => e.dataset.event === 'child_exited' && e.textContent.includes('root/group/b exited #1: trap unreachable'))";
    assert!(browser.wait_for(logged, second).unwrap(), "the crash is in the event log");
    assert!(crashed.elapsed() < Duration::from_secs(2));

    // The restart button without the token is refused, and nothing changes ...
    let click = format!("{}.querySelector('button').click()", row("root/echo"));
    browser.eval(&click).unwrap();
    let refused = "document.getElementById('notice').textContent.includes('refused: admin actions need the token')";
    assert!(
        browser.wait_for(refused, Duration::from_secs(5)).unwrap(),
        "refused without the token"
    );
    assert_eq!(browser.eval(&format!("{}.dataset.incarnation", row("root/echo"))).unwrap(), "1");
    served.warden.command(r#"{"cmd":"call","id":1,"to":"root/echo","payload":"still here"}"#);
    let (reply, skipped) =
        served.warden.expect("reply 1", |e| e["event"] == "reply" && e["id"] == 1);
    assert_eq!(reply["result"], "still here");
    assert!(!skipped.iter().any(|e| e["path"] == "root/echo" && e["event"] == "child_exited"));

    // ... and with it, the child is restarted.
    let token = format!("document.getElementById('token').value = '{}'", served.token);
    browser.eval(&token).unwrap();
    browser.eval(&click).unwrap();
    assert!(
        browser.wait_for(&shows("root/echo", 2), Duration::from_secs(5)).unwrap(),
        "restarted with the token"
    );
    let (exited, _) = served
        .warden
        .expect("echo stopped", |e| e["event"] == "child_exited" && e["path"] == "root/echo");
    assert_eq!(exited["reason"]["kind"], "shutdown");

    // Reading needs no token, so open event streams are bounded: 64 (the page holds
    // one), and the next is refused.
    let address = served.view.strip_prefix("http://").unwrap().trim_end_matches('/').to_owned();
    let open = |expect: &str| {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(crate::common::DEADLINE)).unwrap();
        write!(stream, "GET /api/events HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
        let mut status = String::new();
        BufReader::new(stream.try_clone().unwrap()).read_line(&mut status).unwrap();
        assert!(status.starts_with(expect), "{status}");
        stream
    };
    let streams: Vec<_> = (0..63).map(|_| open("HTTP/1.1 200")).collect();
    drop(open("HTTP/1.1 503"));
    drop(streams);

    // The API refuses a wrong token outright.
    let api = format!("{}api/command", served.view);
    let command = r#"{"cmd":"terminate_child","supervisor":"root","child":"echo"}"#;
    let (status, body) = request(&api, "POST", &[("Authorization", "Bearer nope")], command);
    assert_eq!(status, 401, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["ok"], false);

    if let Some(path) = std::env::var_os("WARDEN_SCREENSHOT") {
        std::fs::write(path, browser.screenshot().unwrap()).unwrap();
    }
    drop(browser);
    served.warden.command(r#"{"cmd":"shutdown"}"#);
    assert_eq!(served.warden.exit_code(), 0);
}

/// A stand-in OpenTelemetry collector: takes OTLP/HTTP posts, answers 200, and hands
/// each body on.
fn collector() -> (String, std::sync::mpsc::Receiver<Value>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut length, mut line) = (0, String::new());
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
            }
            let mut stream = stream;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
        }
    });
    (url, rx)
}

#[test]
fn traces_of_starts_and_calls_reach_an_otlp_collector() {
    let (url, posts) = collector();
    let (_dir, path) = manifest(TREE);
    let mut warden = Running::start_with(&path, &["--in-memory", "--otlp", &url]);
    warden.expect("echo started", |e| e["event"] == "child_started" && e["path"] == "root/echo");
    warden.command(r#"{"cmd":"call","id":1,"to":"root/echo","payload":"traced"}"#);
    warden.reply(1);
    warden.command(r#"{"cmd":"shutdown"}"#);
    assert_eq!(warden.exit_code(), 0);
    // The spans went out by the end of the run, in one post or more.
    let mut spans = Vec::new();
    while let Ok(post) = posts.recv_timeout(Duration::from_millis(200)) {
        for resource in post["resourceSpans"].as_array().into_iter().flatten() {
            let service = &resource["resource"]["attributes"];
            assert!(service.to_string().contains("warden"), "{service}");
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                spans.extend(scope["spans"].as_array().into_iter().flatten().cloned());
            }
        }
    }
    let named = |name: &str, attribute: &str| {
        spans.iter().any(|s| s["name"] == name && s["attributes"].to_string().contains(attribute))
    };
    assert!(named("warden.start", "root/group/a"), "{spans:#?}");
    assert!(named("warden.handle", "root/echo"), "{spans:#?}");
    assert!(named("warden.call", "root/echo"), "{spans:#?}");
}
