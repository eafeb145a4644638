//! A CRM stand-in: an HTTP/1.1 server on 127.0.0.1 that answers each post
//! as its script says (200, 500, 429 with Retry-After, 410, a hang, a
//! redirect, a huge body, a closed connection) and keeps what it received.
//! Plain threads, one per connection, with keep-alive: what the webhook
//! tests and the delivery benchmark need, and nothing of Vigil's own.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How the receiver answers one post.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// This status, empty body.
    Status(u16),
    /// This status (429 or 503) with `Retry-After: seconds`.
    RetryAfter(u16, u64),
    /// No answer until the client gives up (or a minute passes).
    Hang,
    /// The connection closed without an answer.
    Close,
    /// `302 Found` to this location.
    Redirect(String),
    /// `200 OK` with a body of this many bytes.
    Big(usize),
}

/// A post as received.
#[derive(Clone, Debug)]
pub struct Received {
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
    /// How it was answered.
    pub reply: Reply,
}

impl Received {
    /// A header's value ("" if absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// Whether the `standardwebhooks` crate, an implementation
    /// independent of Vigil's, verifies the post with `secret` (its
    /// timestamp checked against the real clock too).
    pub fn verifies(&self, secret: &str) -> bool {
        let mut headers = http::HeaderMap::new();
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            if let Ok(value) = self.header(name).parse() {
                headers.insert(name, value);
            }
        }
        standardwebhooks::Webhook::new(secret)
            .and_then(|w| w.verify(&self.body, &headers))
            .is_ok()
    }

    /// Whether `secret` made one of the post's signatures, by the same
    /// crate, without its check of the timestamp against the real clock
    /// (for posts timed by a test's clock).
    pub fn signed_by(&self, secret: &str) -> bool {
        let Ok(ts) = self.header("webhook-timestamp").parse::<i64>() else {
            return false;
        };
        let expected = standardwebhooks::Webhook::new(secret)
            .and_then(|w| w.sign(self.header("webhook-id"), ts, &self.body));
        expected.is_ok_and(|expected| {
            self.header("webhook-signature")
                .split(' ')
                .any(|s| s == expected)
        })
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    received: Vec<Received>,
}

/// The receiver; it stops when dropped.
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    state: Arc<(Mutex<State>, Condvar)>,
    default: Arc<Mutex<Reply>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Receiver {
    /// Starts a receiver answering 200 unless scripted otherwise.
    pub fn start() -> Self {
        Self::on_port(0)
    }

    /// Starts one on `port` (0: any), e.g. to come back where one was.
    pub fn on_port(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("binding the receiver");
        let port = listener.local_addr().expect("its address").port();
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let default = Arc::new(Mutex::new(Reply::Status(200)));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, d, st) = (state.clone(), default.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (s, d, st) = (s.clone(), d.clone(), st.clone());
                std::thread::spawn(move || serve(conn, &s, &d, &st));
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            state,
            default,
            stop,
            port,
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next posts are answered so, in order; then by the default.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state
            .0
            .lock()
            .expect("receiver state")
            .script
            .extend(replies);
    }

    /// What posts are answered with once the script is used up.
    pub fn set_default(&self, reply: Reply) {
        *self.default.lock().expect("receiver state") = reply;
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state
            .0
            .lock()
            .expect("receiver state")
            .received
            .clone()
    }

    /// How many posts have arrived.
    pub fn count(&self) -> usize {
        self.state.0.lock().expect("receiver state").received.len()
    }

    /// Waits until `n` posts have arrived (at most `timeout`), returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let (lock, cvar) = &*self.state;
        let deadline = Instant::now() + timeout;
        let mut state = lock.lock().expect("receiver state");
        while state.received.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{} of {n} posts arrived within {timeout:?}",
                state.received.len()
            );
            state = cvar.wait_timeout(state, left).expect("receiver state").0;
        }
        state.received.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves one connection's requests until it closes.
fn serve(
    conn: TcpStream,
    state: &(Mutex<State>, Condvar),
    default: &Mutex<Reply>,
    stop: &AtomicBool,
) {
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut headers = HashMap::new();
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let reply = {
            let mut s = state.0.lock().expect("receiver state");
            let reply = s
                .script
                .pop_front()
                .unwrap_or_else(|| default.lock().expect("receiver state").clone());
            s.received.push(Received {
                headers,
                body,
                at: Instant::now(),
                reply: reply.clone(),
            });
            state.1.notify_all();
            reply
        };
        let answer = match reply {
            Reply::Status(code) => head(code, "", 0),
            Reply::RetryAfter(code, secs) => head(code, &format!("Retry-After: {secs}\r\n"), 0),
            Reply::Redirect(to) => head(302, &format!("Location: {to}\r\n"), 0),
            Reply::Big(n) => {
                let mut a = head(200, "", n).into_bytes();
                a.resize(a.len() + n, b'x');
                if writer.write_all(&a).is_err() {
                    return;
                }
                continue;
            }
            Reply::Hang => {
                // Until the client closes, or a minute.
                let _ = reader
                    .get_ref()
                    .set_read_timeout(Some(Duration::from_secs(60)));
                let mut sink = [0u8; 64];
                let _ = reader.read(&mut sink);
                return;
            }
            Reply::Close => return,
        };
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn head(code: u16, extra: &str, len: usize) -> String {
    format!("HTTP/1.1 {code} Scripted\r\n{extra}Content-Length: {len}\r\n\r\n")
}
