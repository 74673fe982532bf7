//! A real headless browser for the live view's tests: Debian's Chromium, driven
//! through the DevTools protocol on a pipe (`--remote-debugging-pipe`: commands on
//! its fd 3, answers and events on its fd 4, each a JSON message ending in NUL).
//!
//! A page that keeps a server-sent-events stream open never "finishes loading", so
//! `--dump-dom` cannot read it; this drives the page instead, and waits for what it
//! expects with a `MutationObserver` and a deadline inside the page (no polling).
//!
//! The browser is `$CHROMIUM`, else `chromium` on the PATH (`apt-get install
//! chromium`; `.ci/run` installs it). Its profile, HOME and caches are in a temporary
//! directory; it is killed when the [`Browser`] is dropped.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long one DevTools command may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// A headless Chromium with one page.
pub struct Browser {
    child: Child,
    to: std::io::PipeWriter,
    from: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    _home: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("pid", &self.child.id()).finish_non_exhaustive()
    }
}

/// The browser to run: `$CHROMIUM`, else `chromium` on the PATH.
pub fn chromium() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        return Ok(path.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "no chromium on the PATH: install Debian's (apt-get install chromium) or set \
             CHROMIUM; .ci/run installs it"
                .into()
        })
}

impl Browser {
    /// Starts the browser with one blank page of 1280×800.
    pub fn start() -> Result<Browser, String> {
        let chromium = chromium()?;
        let home = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (their_in, to) = std::io::pipe().map_err(|e| e.to_string())?;
        let (from, their_out) = std::io::pipe().map_err(|e| e.to_string())?;
        let (their_in, their_out) = (OwnedFd::from(their_in), OwnedFd::from(their_out));
        let (fd_in, fd_out) = (their_in.as_raw_fd(), their_out.as_raw_fd());
        let mut command = Command::new(&chromium);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", home.path().join("profile").display()))
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_CACHE_HOME", home.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec only fcntl and dup2 run, which are
        // async-signal-safe. They put the pipe's ends where Chromium looks for them (fds
        // 3 and 4), by way of fds above both so neither overwrites the other, and
        // without close-on-exec.
        unsafe {
            command.pre_exec(move || {
                let (high_in, high_out) =
                    (libc::fcntl(fd_in, libc::F_DUPFD, 10), libc::fcntl(fd_out, libc::F_DUPFD, 10));
                if high_in < 0
                    || high_out < 0
                    || libc::dup2(high_in, 3) < 0
                    || libc::dup2(high_out, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child =
            command.spawn().map_err(|e| format!("cannot start {}: {e}", chromium.display()))?;
        drop((their_in, their_out));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut from = BufReader::new(from);
            let mut message = Vec::new();
            while from.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop_if(|b| *b == 0);
                if let Ok(value) = serde_json::from_slice::<Value>(&message)
                    && tx.send(value).is_err()
                {
                    return;
                }
                message.clear();
            }
        });
        let mut browser =
            Browser { child, to, from: rx, next_id: 0, session: String::new(), _home: home };
        let target = browser.command("Target.createTarget", json!({ "url": "about:blank" }))?;
        let target = target["targetId"].clone();
        let attached = browser
            .command("Target.attachToTarget", json!({ "targetId": target, "flatten": true }))?;
        browser.session = attached["sessionId"].as_str().unwrap_or_default().to_owned();
        browser.page(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false }),
        )?;
        browser.page("Page.enable", json!({}))?;
        Ok(browser)
    }

    /// A command to the browser itself.
    fn command(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.send(method, params, None)
    }

    /// A command to the page.
    fn page(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let session = self.session.clone();
        self.send(method, params, Some(&session))
    }

    fn send(
        &mut self,
        method: &str,
        params: Value,
        session: Option<&str>,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = session.into();
        }
        let mut bytes = serde_json::to_vec(&message).map_err(|e| e.to_string())?;
        bytes.push(0);
        self.to.write_all(&bytes).map_err(|e| format!("{method}: the browser is gone: {e}"))?;
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let answer = self
                .from
                .recv_timeout(left)
                .map_err(|_| format!("{method}: no answer within {DEADLINE:?}"))?;
            if answer["id"] == id {
                return match answer.get("error") {
                    Some(error) => Err(format!("{method}: {error}")),
                    None => Ok(answer["result"].clone()),
                };
            }
        }
    }

    /// Opens `url` (returns once it is navigated to, not once it "finished loading").
    pub fn goto(&mut self, url: &str) -> Result<(), String> {
        let answer = self.page("Page.navigate", json!({ "url": url }))?;
        match answer.get("errorText") {
            Some(error) => Err(format!("cannot open {url}: {error}")),
            None => Ok(()),
        }
    }

    /// The value of a JavaScript expression in the page (a promise is awaited).
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let answer = self.page(
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
        )?;
        if let Some(exception) = answer.get("exceptionDetails") {
            return Err(format!("{expression}: {exception}"));
        }
        Ok(answer["result"]["value"].clone())
    }

    /// Waits until the JavaScript condition `condition` holds in the page, checked at
    /// each change of the page's DOM, for at most `within`; `false` if it never did.
    pub fn wait_for(&mut self, condition: &str, within: Duration) -> Result<bool, String> {
        let script = format!(
            "new Promise((done) => {{
                const holds = () => {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }};
                if (holds()) return done(true);
                const observer = new MutationObserver(() => {{
                    if (holds()) {{ observer.disconnect(); done(true); }}
                }});
                observer.observe(document, {{ subtree: true, childList: true, attributes: true, characterData: true }});
                setTimeout(() => {{ observer.disconnect(); done(holds()); }}, {});
            }})",
            within.as_millis()
        );
        Ok(self.eval(&script)? == true)
    }

    /// A PNG of the page as it is now.
    pub fn screenshot(&mut self) -> Result<Vec<u8>, String> {
        let shot = self.page("Page.captureScreenshot", json!({ "format": "png" }))?;
        let data = shot["data"].as_str().ok_or("no screenshot data")?;
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(data).map_err(|e| e.to_string())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
