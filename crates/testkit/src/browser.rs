//! A real browser for page tests: Debian's Chromium, headless, driven over
//! WebDriver by Debian's chromedriver (fantoccini speaks the protocol). The
//! calls are blocking, like the rest of the end-to-end helpers.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::Value;

/// Where Debian puts them (packages chromium and chromium-driver).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium with one window; both processes stop when dropped.
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts Chromium (1400×900). `None` when it is not installed and `CI`
    /// is not set (with `CI` set, a missing browser fails the test).
    pub fn start() -> Option<Self> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but {CHROMIUM} or {CHROMEDRIVER} is missing (scripts/test installs them)"
            );
            eprintln!("skipped: Chromium or chromedriver is not installed");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port for chromedriver")
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the WebDriver client");
        // The WebDriver client's TLS stack (unused on plain-HTTP loopback)
        // needs a provider chosen; it is the same as Vigil's. Another test
        // of this process may have chosen it first.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut caps = serde_json::Map::new();
        // The portal under test presents the data directory's development certificate.
        caps.insert("acceptInsecureCerts".into(), serde_json::Value::Bool(true));
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                // --no-sandbox: tests run as root, where Chromium's sandbox cannot start.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,900"],
            }),
        );
        let client = runtime
            .block_on(async {
                ClientBuilder::rustls()
                    .expect("TLS roots for the WebDriver client")
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{port}"))
                    .await
            })
            .expect("a Chromium session");
        Some(Self {
            runtime,
            client: Some(client),
            driver,
        })
    }

    fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the session is open until drop")
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.runtime
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) {
        self.runtime
            .block_on(async { self.client().find(Locator::Css(css)).await?.click().await })
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Types `text` into the element `css` selects (a file input takes a path).
    pub fn type_into(&self, css: &str, text: &str) {
        self.runtime
            .block_on(async {
                self.client()
                    .find(Locator::Css(css))
                    .await?
                    .send_keys(text)
                    .await
            })
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Runs `script` (a function body: `return ...`) in the page.
    pub fn js(&self, script: &str) -> Value {
        self.runtime
            .block_on(self.client().execute(script, Vec::new()))
            .unwrap_or_else(|e| panic!("running {script}: {e}"))
    }

    /// The text of the element `css` selects.
    pub fn text(&self, css: &str) -> String {
        self.runtime
            .block_on(async { self.client().find(Locator::Css(css)).await?.text().await })
            .unwrap_or_else(|e| panic!("reading {css}: {e}"))
    }

    /// Waits (30 s at most) until `script` returns true; `what` names it in the failure.
    pub fn wait_until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.js(script) != Value::Bool(true) {
            assert!(Instant::now() < deadline, "{what}: not within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Saves a screenshot of the window as PNG to `path`, once the window
    /// has settled: headless Chromium presents a canvas some frames after
    /// it was drawn, so shots are taken until two in a row agree (5 s at most).
    pub fn screenshot(&self, path: &Path) {
        let shoot = || {
            self.runtime
                .block_on(self.client().screenshot())
                .expect("a screenshot")
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = shoot();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = shoot();
            if now == last || Instant::now() > deadline {
                break;
            }
            last = now;
        }
        std::fs::write(path, last).expect("saving the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
