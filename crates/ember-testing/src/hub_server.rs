//! A Hugging Face Hub on 127.0.0.1 for tests: the endpoints huggingface_hub and hf-hub use
//! (`/api/models/{id}/revision/{rev}`, `/{id}/resolve/{rev}/{file}` with Range requests, ETag,
//! X-Repo-Commit and X-Error-Code), serving directories the test names. It can cut the first
//! transfer of a file short, and require a token for a repo.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One repository: its files at one commit, reachable by `revision` or by the commit itself.
#[derive(Clone)]
pub struct ServedRepo {
    pub id: String,
    pub revision: String,
    pub commit: String,
    pub files: BTreeMap<String, Vec<u8>>,
    /// `Authorization: Bearer <token>` required (401 otherwise).
    pub token: Option<String>,
}

impl ServedRepo {
    /// Every file of `dir` (not recursive), served as `id` at `revision`.
    pub fn from_dir(id: &str, revision: &str, commit: &str, dir: &Path) -> Self {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).expect("read served dir").flatten() {
            let p = entry.path();
            if p.is_file() {
                let name = entry.file_name().to_string_lossy().into_owned();
                files.insert(name, std::fs::read(&p).expect("read served file"));
            }
        }
        ServedRepo {
            id: id.into(),
            revision: revision.into(),
            commit: commit.into(),
            files,
            token: None,
        }
    }
}

/// One request the server answered: method, path and its Range header.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
}

#[derive(Default)]
struct State {
    log: Vec<Request>,
    /// Files whose next full transfer (a Range starting at 0, other than the 0-0 probe) is cut
    /// after half the bytes.
    cut_once: Vec<String>,
}

/// The running server; it stops with the test process.
pub struct HubServer {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

impl HubServer {
    pub fn start(repos: Vec<ServedRepo>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let (st, repos) = (state.clone(), Arc::new(repos));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (st, repos) = (st.clone(), repos.clone());
                std::thread::spawn(move || serve(stream, &repos, &st));
            }
        });
        HubServer { endpoint, state }
    }

    /// The next full transfer of `file` stops after half its bytes (the connection closes).
    pub fn cut_next_transfer(&self, file: &str) {
        self.lock().cut_once.push(file.into());
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Request> {
        self.lock().log.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A stable ETag for the bytes (FNV-1a, hex).
fn etag(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn respond(s: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
}

fn error(s: &mut TcpStream, status: &str, code: &str) {
    respond(
        s,
        status,
        &[("X-Error-Code", code.into())],
        format!("{{\"error\":\"{code}\"}}").as_bytes(),
    );
}

fn serve(mut stream: TcpStream, repos: &[ServedRepo], state: &Mutex<State>) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    );
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let range = headers.get("range").cloned();
    let cut = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        st.log.push(Request {
            method: method.clone(),
            path: path.clone(),
            range: range.clone(),
        });
        st.cut_once.clone()
    };
    let path_only = path.split('?').next().unwrap_or_default();
    // /api/models/{org}/{name}/revision/{rev}  or  /{org}/{name}/resolve/{rev}/{file}
    let (id, rev, file) = if let Some(rest) = path_only.strip_prefix("/api/models/") {
        match rest.split_once("/revision/") {
            Some((id, rev)) => (id.to_string(), rev.replace("%2F", "/"), None),
            None => return error(&mut stream, "404 Not Found", "RepoNotFound"),
        }
    } else {
        let rest = path_only.trim_start_matches('/');
        match rest.split_once("/resolve/") {
            Some((id, tail)) => match tail.split_once('/') {
                Some((rev, file)) => (id.to_string(), rev.to_string(), Some(file.to_string())),
                None => return error(&mut stream, "404 Not Found", "EntryNotFound"),
            },
            None => return error(&mut stream, "404 Not Found", "RepoNotFound"),
        }
    };
    let Some(repo) = repos.iter().find(|r| r.id == id) else {
        // The Hub answers 401 for a repo it will not show an anonymous caller.
        return error(&mut stream, "401 Unauthorized", "RepoNotFound");
    };
    if let Some(token) = &repo.token
        && headers.get("authorization") != Some(&format!("Bearer {token}"))
    {
        return error(&mut stream, "401 Unauthorized", "GatedRepo");
    }
    if rev != repo.revision && rev != repo.commit {
        return error(&mut stream, "404 Not Found", "RevisionNotFound");
    }
    let Some(file) = file else {
        let siblings: Vec<serde_json::Value> = repo
            .files
            .keys()
            .map(|f| serde_json::json!({ "rfilename": f }))
            .collect();
        let body = serde_json::json!({ "id": repo.id, "sha": repo.commit, "siblings": siblings });
        return respond(
            &mut stream,
            "200 OK",
            &[("Content-Type", "application/json".into())],
            body.to_string().as_bytes(),
        );
    };
    let Some(bytes) = repo.files.get(&file) else {
        return error(&mut stream, "404 Not Found", "EntryNotFound");
    };
    let total = bytes.len();
    let (start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(r) => {
            let (a, b) = r.split_once('-').unwrap_or((r, ""));
            let a: usize = a.parse().unwrap_or(0);
            let b: usize = b.parse().map(|b: usize| b + 1).unwrap_or(total);
            (a.min(total), b.min(total))
        }
        None => (0, total),
    };
    let common = [
        ("ETag", format!("\"{}\"", etag(bytes))),
        ("X-Repo-Commit", repo.commit.clone()),
        ("Accept-Ranges", "bytes".into()),
    ];
    let body = &bytes[start..end];
    let mut hs: Vec<(&str, String)> = common.to_vec();
    let status = if range.is_some() {
        hs.push((
            "Content-Range",
            format!("bytes {start}-{}/{total}", end.saturating_sub(1)),
        ));
        "206 Partial Content"
    } else {
        "200 OK"
    };
    let full_transfer = start == 0 && end - start > 1;
    if method == "GET" && full_transfer && cut.contains(&file) {
        {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            st.cut_once.retain(|f| f != &file);
        }
        // Promise the whole body, send half, hang up: an interrupted download.
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (k, v) in &hs {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body[..body.len() / 2]);
        let _ = stream.flush();
        return;
    }
    if method == "HEAD" {
        return respond(&mut stream, status, &hs, &[]);
    }
    respond(&mut stream, status, &hs, body)
}
