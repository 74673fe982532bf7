//! Deny by default: a guest reaches no file, variable or socket it was not granted,
//! and a granted directory cannot be left.

use std::path::Path;
use warden::sandbox::{DirGrant, Grants, Network, Sandbox, SandboxConfig};
use warden_tests::{PROBE, engine};

async fn probe(grants: Grants, request: &str) -> Result<String, String> {
    let plugin = engine().load_file(PROBE).unwrap();
    let mut config = SandboxConfig::new("root/probe");
    config.grants = grants;
    let mut child = Sandbox::start(&plugin, config, 1).await.expect("probe starts");
    let handled = child.handle(None, request.as_bytes().to_vec(), true).await.expect("no trap");
    handled.reply.map(|r| String::from_utf8(r).unwrap())
}

/// A granted directory `data/` with `inside.txt`, next to `secret.txt` outside it,
/// and a symlink in `data/` pointing at the secret.
fn layout() -> (tempfile::TempDir, Grants) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("inside.txt"), "granted").unwrap();
    std::fs::write(tmp.path().join("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), data.join("link")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", data.join("rel-link")).unwrap();
    let grants = Grants {
        dirs: vec![DirGrant { host: data, guest: "/data".into(), writable: false }],
        ..Grants::default()
    };
    (tmp, grants)
}

#[tokio::test]
async fn no_file_is_readable_without_a_grant() {
    let (tmp, _) = layout();
    let secret = tmp.path().join("secret.txt");
    assert!(probe(Grants::default(), &format!("read:{}", secret.display())).await.is_err());
    assert!(probe(Grants::default(), "read:/etc/passwd").await.is_err());
    assert!(probe(Grants::default(), "list:/").await.is_err());
}

#[tokio::test]
async fn a_granted_directory_is_readable_and_cannot_be_left() {
    let (tmp, grants) = layout();
    assert_eq!(probe(grants.clone(), "read:/data/inside.txt").await.as_deref(), Ok("granted"));
    for escape in [
        "read:/data/../secret.txt".to_string(),
        "read:../secret.txt".to_string(),
        format!("read:{}", tmp.path().join("secret.txt").display()),
        "read:/data/link".to_string(),
        "read:/data/rel-link".to_string(),
        "read:/etc/passwd".to_string(),
    ] {
        let result = probe(grants.clone(), &escape).await;
        assert!(result.is_err(), "{escape} escaped the grant: {result:?}");
        assert!(!format!("{result:?}").contains("top secret"));
    }
}

#[tokio::test]
async fn a_read_only_grant_refuses_writes_and_a_writable_one_allows_them() {
    let (tmp, mut grants) = layout();
    assert!(probe(grants.clone(), "write:/data/new.txt:x").await.is_err());
    assert!(!tmp.path().join("data/new.txt").exists());
    grants.dirs[0].writable = true;
    assert_eq!(probe(grants, "write:/data/new.txt:hello").await.as_deref(), Ok("ok"));
    assert_eq!(std::fs::read_to_string(tmp.path().join("data/new.txt")).unwrap(), "hello");
    assert!(Path::new(&tmp.path().join("secret.txt")).exists());
}

#[tokio::test]
async fn only_granted_environment_variables_are_visible() {
    // SAFETY-free: the variable is read by the host's own environment, never granted.
    assert!(std::env::var("PATH").is_ok(), "the host has a PATH");
    let grants = Grants { env: vec![("GREETING".into(), "hello".into())], ..Grants::default() };
    assert_eq!(probe(grants.clone(), "env:GREETING").await.as_deref(), Ok("hello"));
    assert!(probe(grants.clone(), "env:PATH").await.is_err());
    assert!(probe(Grants::default(), "env:HOME").await.is_err());
}

#[tokio::test]
async fn sockets_are_refused_unless_granted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let denied = probe(Grants::default(), &format!("connect:{addr}")).await;
    assert!(denied.is_err(), "connected without a grant: {denied:?}");
    let granted = Grants { network: Network::Any, ..Grants::default() };
    assert_eq!(probe(granted, &format!("connect:{addr}")).await.as_deref(), Ok("connected"));
}

/// The grant of one allow-list rule per entry.
fn rules(rules: &[String]) -> Grants {
    let rules = rules.iter().map(|r| r.parse().expect("a rule")).collect();
    Grants { network: Network::Only(rules), ..Grants::default() }
}

#[tokio::test]
async fn an_allow_list_reaches_the_addresses_it_names_and_no_other() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed = listener.local_addr().unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = other.local_addr().unwrap();
    let grants = rules(&[format!("tcp:{allowed}")]);
    assert_eq!(
        probe(grants.clone(), &format!("connect:{allowed}")).await.as_deref(),
        Ok("connected")
    );
    let denied = probe(grants.clone(), &format!("connect:{other}")).await;
    assert!(denied.is_err(), "connected to an address no rule names: {denied:?}");
    // A TCP rule is not a UDP one.
    let datagram = probe(grants, &format!("send:{allowed}")).await;
    assert!(datagram.is_err(), "sent a datagram under a tcp rule: {datagram:?}");
}

#[tokio::test]
async fn an_allow_list_bounds_what_a_child_may_listen_on() {
    let listens = rules(&["tcp:127.0.0.1".to_string()]);
    let bound = probe(listens, "listen:127.0.0.1:0").await.expect("listens on a named address");
    assert!(bound.starts_with("127.0.0.1:"), "{bound}");
    let elsewhere = probe(rules(&["tcp:127.0.0.2:80".to_string()]), "listen:127.0.0.1:0").await;
    assert!(elsewhere.is_err(), "listened on an address no rule names: {elsewhere:?}");
}

#[tokio::test]
async fn an_allow_list_rule_lets_datagrams_through_to_its_address_only() {
    let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let grants = rules(&[format!("udp:{addr}")]);
    assert_eq!(probe(grants.clone(), &format!("send:{addr}")).await.as_deref(), Ok("sent"));
    server.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut datagram = [0u8; 16];
    let (n, _) = server.recv_from(&mut datagram).expect("the datagram arrives");
    assert_eq!(&datagram[..n], b"probe");
    let mut port = addr;
    port.set_port(addr.port().wrapping_add(1).max(1));
    let denied = probe(grants, &format!("send:{port}")).await;
    assert!(denied.is_err(), "sent to a port no rule names: {denied:?}");
}

#[tokio::test]
async fn name_lookups_need_the_dns_rule() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let by_name = format!("connect:localhost:{port}");
    let without = probe(rules(&[format!("tcp:127.0.0.1:{port}")]), &by_name).await;
    assert!(without.is_err(), "resolved a name without the dns rule: {without:?}");
    let with = rules(&[format!("tcp:127.0.0.1:{port}"), format!("tcp:[::1]:{port}"), "dns".into()]);
    assert_eq!(probe(with, &by_name).await.as_deref(), Ok("connected"));
}
