//! A headless Chromium driven through chromedriver (Debian's `chromium` and
//! `chromium-driver`), for tests of what a visitor or an administrator sees.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::server::free_port;

/// The user agent the browser presents: a desktop Chrome. Headless Chromium's own agent says
/// `HeadlessChrome`, which the beacon rightly files as a bot.
pub const DESKTOP_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

/// A chromedriver process and a browser session on it.
pub struct Browser {
    pub client: Client,
    port: u16,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> Self {
        let port = free_port();
        let driver = Command::new(
            std::env::var("TALLY_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()),
        )
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver (apt-get install chromium chromium-driver)");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::Builder::new()
            .prefix("tally-chromium-")
            .tempdir()
            .unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": std::env::var("TALLY_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                    format!("--window-size={width},{height}"),
                    format!("--user-agent={DESKTOP_UA}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("open a browser session");
        Self {
            client,
            port,
            driver,
            _profile: profile,
        }
    }

    /// The text of the first element matching the CSS `selector`.
    pub async fn text(&self, selector: &str) -> String {
        self.client
            .find(fantoccini::Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no `{selector}`: {e}"))
            .text()
            .await
            .expect("element text")
    }

    /// Clicks the first element matching the CSS `selector`, as a user would.
    pub async fn click(&self, selector: &str) {
        self.client
            .find(fantoccini::Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no `{selector}`: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click `{selector}`: {e}"));
    }

    /// Types `text` into the field matching the CSS `selector`, replacing what it held.
    pub async fn fill(&self, selector: &str, text: &str) {
        let field = self
            .client
            .find(fantoccini::Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no `{selector}`: {e}"));
        field.clear().await.expect("clear the field");
        field.send_keys(text).await.expect("type into the field");
    }

    /// Saves a PNG screenshot as `target/screenshots/{name}.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Polls `script` (JavaScript returning a value) until it returns `want`, for up to 15 s.
    pub async fn wait_for_js(&self, script: &str, want: serde_json::Value) {
        let start = Instant::now();
        loop {
            let got = self
                .client
                .execute(script, vec![])
                .await
                .expect("run script");
            if got == want {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "`{script}` is {got}, expected {want}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Messages the page logged at level SEVERE (console errors, failed loads, uncaught
    /// exceptions) since the last call, from chromedriver's log endpoint.
    pub async fn console_errors(&self) -> Vec<String> {
        let id = self
            .client
            .session_id()
            .await
            .ok()
            .flatten()
            .expect("session id");
        let url = format!("http://127.0.0.1:{}/session/{id}/se/log", self.port);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<String>();
        let req = hyper::Request::post(url)
            .header("content-type", "application/json")
            .body(r#"{"type":"browser"}"#.to_owned())
            .unwrap();
        let resp = client.request(req).await.expect("read browser log");
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let log: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        log["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Ends the session and chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
