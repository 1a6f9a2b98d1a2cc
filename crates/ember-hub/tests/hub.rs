//! Hub ids resolved as transformers resolves them (issue 21, item 1), offline: a cache laid out
//! by the test, and a Hub on 127.0.0.1 (ember_testing::hub_server) for the download path.

use std::path::{Path, PathBuf};

use ember_hub::{Files, Hub, HubError};
use ember_testing::hub_server::{HubServer, ServedRepo};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny() -> PathBuf {
    root().join("fixtures/tiny/qwen3-tiny")
}

fn hub(cache: &Path, endpoint: &str, token: Option<&str>, offline: bool) -> Hub {
    Hub {
        cache: cache.to_path_buf(),
        endpoint: endpoint.into(),
        token: token.map(str::to_string),
        offline,
    }
}

/// Every file of `a` is in `b` with the same bytes.
fn same_files(a: &Path, b: &Path) {
    for e in std::fs::read_dir(a).expect("read").flatten() {
        let name = e.file_name();
        let got = std::fs::read(b.join(&name)).unwrap_or_else(|_| panic!("{name:?} missing"));
        assert!(
            got == std::fs::read(e.path()).expect("read"),
            "{name:?} differs"
        );
    }
}

#[test]
fn a_cache_laid_out_as_huggingface_hub_does_resolves_offline() {
    let cache = tempfile::tempdir().expect("tmp");
    let repo = cache.path().join("models--ember--qwen3-tiny");
    let snapshot = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&snapshot).expect("mkdir");
    std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
    std::fs::write(repo.join("refs/main"), COMMIT).expect("ref");
    for e in std::fs::read_dir(tiny()).expect("read").flatten() {
        std::fs::copy(e.path(), snapshot.join(e.file_name())).expect("copy");
    }
    // No server at all: the endpoint refuses connections.
    let h = hub(cache.path(), "http://127.0.0.1:9", None, true);
    let id = Path::new("ember/qwen3-tiny");
    assert_eq!(h.resolve(id, None, Files::Model).expect("main"), snapshot);
    // A commit is a revision too.
    assert_eq!(
        h.resolve(id, Some(COMMIT), Files::Model).expect("commit"),
        snapshot
    );
    // A revision the cache does not have, and a missing file, are named.
    let e = h
        .resolve(id, Some("v2"), Files::Model)
        .expect_err("v2 not cached");
    assert!(
        matches!(e, HubError::NotCached { ref revision, .. } if revision == "v2"),
        "{e}"
    );
    std::fs::remove_file(snapshot.join("tokenizer.json")).expect("rm");
    let e = h.resolve(id, None, Files::Model).expect_err("incomplete");
    assert!(e.to_string().contains("missing tokenizer.json"), "{e}");
    assert!(e.to_string().contains("HF_HUB_OFFLINE"), "{e}");
    // config.json alone is enough to plan.
    assert_eq!(
        h.resolve(id, None, Files::Config).expect("config"),
        snapshot
    );
    // A path that exists wins over any id.
    assert_eq!(
        h.resolve(&tiny(), None, Files::Model).expect("local"),
        tiny()
    );
    // A missing longer path is not taken for an id.
    let e = h
        .resolve(Path::new("no/such/dir"), None, Files::Model)
        .expect_err("missing");
    assert!(matches!(e, HubError::NotFound { .. }), "{e}");
}

#[test]
fn a_model_downloads_into_the_cache_resuming_an_interrupted_transfer() {
    let server = HubServer::start(vec![ServedRepo::from_dir(
        "ember/qwen3-tiny",
        "main",
        COMMIT,
        &tiny(),
    )]);
    server.cut_next_transfer("model.safetensors");
    let cache = tempfile::tempdir().expect("tmp");
    let h = hub(cache.path(), &server.endpoint, None, false);
    let id = Path::new("ember/qwen3-tiny");
    let dir = h.resolve(id, None, Files::Model).expect("download");
    assert_eq!(
        dir,
        cache
            .path()
            .join("models--ember--qwen3-tiny/snapshots")
            .join(COMMIT)
    );
    same_files(&tiny(), &dir);
    assert_eq!(
        std::fs::read_to_string(cache.path().join("models--ember--qwen3-tiny/refs/main"))
            .expect("refs/main"),
        COMMIT
    );
    // The cut transfer was continued from where it stopped, not restarted.
    let size = std::fs::metadata(tiny().join("model.safetensors"))
        .expect("size")
        .len();
    let weights: Vec<_> = server
        .log()
        .into_iter()
        .filter(|r| {
            r.path.ends_with("/model.safetensors") && r.range.as_deref() != Some("bytes=0-0")
        })
        .collect();
    assert_eq!(weights.len(), 2, "{weights:?}");
    assert_eq!(weights[0].range.as_deref(), Some("bytes=0-"));
    assert_eq!(weights[1].range, Some(format!("bytes={}-", size / 2)));
    // Resolved again: from the cache, without a request.
    let before = server.log().len();
    assert_eq!(h.resolve(id, None, Files::Model).expect("cached"), dir);
    assert_eq!(server.log().len(), before);
    // Offline now works too.
    let off = hub(cache.path(), "http://127.0.0.1:9", None, true);
    assert_eq!(off.resolve(id, None, Files::Model).expect("offline"), dir);
}

#[test]
fn sharded_checkpoints_fetch_every_shard_the_index_lists_and_config_fetches_no_weights() {
    let sharded = root().join("fixtures/tiny/qwen3-tiny-tied-sharded");
    let server = HubServer::start(vec![ServedRepo::from_dir(
        "ember/sharded",
        "main",
        COMMIT,
        &sharded,
    )]);
    let cache = tempfile::tempdir().expect("tmp");
    let h = hub(cache.path(), &server.endpoint, None, false);
    let id = Path::new("ember/sharded");
    let dir = h.resolve(id, None, Files::Config).expect("config");
    assert!(dir.join("config.json").is_file());
    assert!(
        !server.log().iter().any(|r| r.path.contains(".safetensors")),
        "planning downloads no weights: {:?}",
        server.log()
    );
    let dir = h.resolve(id, None, Files::Model).expect("model");
    same_files(&sharded, &dir);
}

#[test]
fn refusals_name_the_revision_the_repo_and_the_token() {
    let mut private = ServedRepo::from_dir("ember/private", "main", COMMIT, &tiny());
    private.token = Some("s3cret".into());
    let server = HubServer::start(vec![
        ServedRepo::from_dir("ember/qwen3-tiny", "main", COMMIT, &tiny()),
        private,
    ]);
    let cache = tempfile::tempdir().expect("tmp");
    let anon = hub(cache.path(), &server.endpoint, None, false);
    let e = anon
        .resolve(Path::new("ember/qwen3-tiny"), Some("v9"), Files::Model)
        .expect_err("no v9");
    assert!(
        matches!(e, HubError::RevisionNotFound { ref revision, .. } if revision == "v9"),
        "{e}"
    );
    assert!(e.to_string().contains("revision `v9` not found"), "{e}");
    let e = anon
        .resolve(Path::new("ember/nothing"), None, Files::Model)
        .expect_err("no repo");
    assert!(matches!(e, HubError::RepoNotFound { .. }), "{e}");
    assert!(e.to_string().contains("set HF_TOKEN"), "{e}");
    let e = anon
        .resolve(Path::new("ember/private"), None, Files::Model)
        .expect_err("needs a token");
    assert!(e.to_string().contains("401 Unauthorized"), "{e}");
    assert!(e.to_string().contains("needs a token: set HF_TOKEN"), "{e}");
    let wrong = hub(cache.path(), &server.endpoint, Some("nope"), false);
    let e = wrong
        .resolve(Path::new("ember/private"), None, Files::Model)
        .expect_err("refused token");
    assert!(e.to_string().contains("was refused"), "{e}");
    let right = hub(cache.path(), &server.endpoint, Some("s3cret"), false);
    let dir = right
        .resolve(Path::new("ember/private"), None, Files::Model)
        .expect("token accepted");
    same_files(&tiny(), &dir);
    // An adapter needs its two files.
    let e = right
        .resolve(Path::new("ember/private"), None, Files::Adapter)
        .expect_err("not an adapter");
    assert!(e.to_string().contains("has no adapter_config.json"), "{e}");
}

#[test]
fn an_unreachable_hub_is_named_with_the_missing_directory() {
    let cache = tempfile::tempdir().expect("tmp");
    // Port 9 (discard) refuses connections on loopback.
    let h = hub(cache.path(), "http://127.0.0.1:9", None, false);
    let e = h
        .resolve(Path::new("typo-model"), None, Files::Model)
        .expect_err("unreachable");
    let msg = e.to_string();
    assert!(matches!(e, HubError::Unreachable { .. }), "{msg}");
    assert!(msg.starts_with("typo-model: no such directory"), "{msg}");
    assert!(msg.contains("HF_HUB_OFFLINE=1"), "{msg}");
}
