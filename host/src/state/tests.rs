//! The same rules for both stores, then what only the disk store promises.

use super::*;

fn set(key: &str, value: &[u8]) -> Op {
    Op::Set(key.to_owned(), value.to_vec())
}

fn del(key: &str) -> Op {
    Op::Delete(key.to_owned())
}

fn stores() -> Vec<(tempfile::TempDir, Box<dyn StateStore>)> {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskStore::open(dir.path()).unwrap();
    vec![(tempfile::tempdir().unwrap(), Box::new(MemoryStore::new())), (dir, Box::new(disk))]
}

async fn put(store: &dyn StateStore, scope: &str, ops: Vec<Op>) -> Result<Vec<bool>, StateError> {
    store.write(scope, ops, Quota::default()).await
}

#[tokio::test]
async fn scopes_are_separate_and_keys_are_ordered() {
    for (_dir, store) in stores() {
        let store = &*store;
        put(store, "root/a", vec![set("k2", b"2"), set("k1", b"1")]).await.unwrap();
        put(store, "root/b", vec![set("k1", b"other")]).await.unwrap();
        assert_eq!(store.get("root/a", "k1").unwrap().as_deref(), Some(&b"1"[..]), "{store:?}");
        assert_eq!(store.keys("root/a", "k").unwrap(), ["k1", "k2"]);
        assert_eq!(store.keys("root/a", "k2").unwrap(), ["k2"]);
        assert_eq!(put(store, "root/a", vec![del("k1"), del("k1")]).await.unwrap(), [true, false]);
        assert_eq!(store.get("root/b", "k1").unwrap().as_deref(), Some(&b"other"[..]));
        assert_eq!(
            store.scopes().unwrap(),
            [
                ("root/a".to_owned(), Usage { keys: 1, bytes: 3 }),
                ("root/b".to_owned(), Usage { keys: 1, bytes: 7 })
            ]
        );
    }
}

#[tokio::test]
async fn bad_keys_and_large_values_are_refused_and_change_nothing() {
    for (_dir, store) in stores() {
        let store = &*store;
        let bad = StateError::BadKey(MAX_KEY_BYTES as u64);
        assert_eq!(put(store, "s", vec![set("ok", b"1"), set("", b"x")]).await, Err(bad.clone()));
        let long = "k".repeat(64 * 1024);
        assert_eq!(store.get("s", &long), Err(bad.clone()));
        assert_eq!(put(store, "s", vec![set(&long, b"x")]).await, Err(bad));
        let big = vec![0u8; (1 << 20) + 1];
        assert_eq!(
            put(store, "s", vec![set("ok", b"1"), set("k", &big)]).await,
            Err(StateError::ValueTooLarge(1 << 20))
        );
        // The refused batches wrote nothing, not even their good first op.
        assert_eq!(store.get("s", "ok").unwrap(), None, "{store:?}");
        assert!(store.scopes().unwrap().is_empty());
    }
}

#[tokio::test]
async fn quotas_count_keys_and_bytes_and_a_refused_batch_changes_nothing() {
    let quota = Quota { max_bytes: 100, max_keys: 3, max_value_bytes: 50 };
    for (_dir, store) in stores() {
        let store = &*store;
        let w = |ops| store.write("s", ops, quota);
        w(vec![set("a", b"1"), set("b", b"2"), set("c", b"3")]).await.unwrap();
        let refused = w(vec![del("a"), set("d", b"4"), set("e", b"5")]).await;
        assert_eq!(refused, Err(StateError::QuotaExceeded("4 keys, the limit is 3".into())));
        assert_eq!(store.keys("s", "").unwrap(), ["a", "b", "c"], "{store:?}");
        // Overwriting and deleting within the batch is counted as it ends up.
        w(vec![del("a"), set("d", b"4")]).await.unwrap();
        assert_eq!(
            w(vec![set("b", &[0; 50]), set("c", &[0; 50])]).await,
            Err(StateError::QuotaExceeded("104 bytes, the limit is 100".into()))
        );
        assert_eq!(w(vec![set("b", &[0; 51])]).await, Err(StateError::ValueTooLarge(50)));
        w(vec![set("b", &[0; 50])]).await.unwrap();
        assert_eq!(store.scopes().unwrap(), [("s".to_owned(), Usage { keys: 3, bytes: 55 })]);
        // Over a quota lowered since, shrinking is still allowed; growing is not.
        let lower = Quota { max_bytes: 4, ..quota };
        store.write("s", vec![set("b", b"")], lower).await.unwrap();
        assert!(store.write("s", vec![set("c", b"33")], lower).await.is_err());
    }
}

#[tokio::test]
async fn removing_a_tree_spares_siblings_that_share_a_prefix() {
    for (_dir, store) in stores() {
        let store = &*store;
        for scope in ["root/a", "root/a/x", "root/a/x/y", "root/a-b", "root/ab", "root"] {
            put(store, scope, vec![set("k", b"v"), set("l", b"w")]).await.unwrap();
        }
        assert_eq!(store.remove_tree("root/a").await.unwrap(), 6);
        let left: Vec<String> = store.scopes().unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(left, ["root", "root/a-b", "root/ab"], "{store:?}");
        assert_eq!(store.get("root/a/x", "k").unwrap(), None);
        assert_eq!(store.get("root/ab", "k").unwrap().as_deref(), Some(&b"v"[..]));
    }
}

#[tokio::test]
async fn a_disk_store_keeps_its_writes_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = DiskStore::open(dir.path()).unwrap();
        // Many writers at once: the writer thread commits them in groups.
        let writes: Vec<_> = (0..200)
            .map(|i| {
                store.write(
                    &format!("root/c{}", i % 7),
                    vec![set(&format!("k{i}"), b"v")],
                    Quota::default(),
                )
            })
            .collect();
        for write in writes {
            write.await.unwrap();
        }
    }
    let store = DiskStore::open(dir.path()).unwrap();
    let total: u64 = store.scopes().unwrap().iter().map(|(_, u)| u.keys).sum();
    assert_eq!(total, 200);
    assert_eq!(store.get("root/c3", "k3").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn a_data_dir_in_use_names_the_pid_that_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = DiskStore::open(dir.path()).unwrap();
    let second = DiskStore::open(dir.path()).unwrap_err();
    let expected =
        format!("data dir {} is in use by pid {}", dir.path().display(), std::process::id());
    assert_eq!(second.to_string(), expected);
    drop(first);
    DiskStore::open(dir.path()).expect("free again once the first store is closed");
}

#[tokio::test]
async fn a_corrupted_database_is_reported_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = DiskStore::open(dir.path()).unwrap();
        put(&store, "root/c", vec![set("count", b"41")]).await.unwrap();
    }
    let file = dir.path().join(disk::DB_FILE);
    let mut bytes = std::fs::read(&file).unwrap();
    // Damage the page that holds the entry, as a bad sector or a stray write would.
    let at = bytes.windows(6).position(|w| w == b"root/c").expect("the entry is in the file");
    for b in &mut bytes[at..at + 16] {
        *b ^= 0xA5;
    }
    std::fs::write(&file, &bytes).unwrap();
    let error = DiskStore::open(dir.path()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, OpenError::Corrupted { .. }), "{message}");
    assert!(
        message.contains("state.redb is corrupted") && message.contains("left as it is"),
        "{message}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), bytes, "the damaged file was changed");

    // Not a database at all.
    std::fs::write(&file, b"this is not a redb file, but it is not empty either").unwrap();
    let error = DiskStore::open(dir.path()).unwrap_err();
    assert!(matches!(error, OpenError::Corrupted { .. }), "{error}");
}
