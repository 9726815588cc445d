//! A real S3-compatible server for the object-store tests: moto, from PyPI.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set by CI (`.ci/run`): a missing `moto_server` fails the S3 tests instead
/// of skipping them.
const REQUIRE_MOTO: &str = "EMBER_REQUIRE_MOTO";

/// A real S3-compatible server (moto, from PyPI) on a free loopback port, for as
/// long as the value lives.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl S3Server {
    /// Starts moto on a free port; tries another port when the one found free
    /// was taken before moto bound it (tests start servers side by side).
    fn start() -> Option<Self> {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .ok()?
                .local_addr()
                .ok()?
                .port();
            let child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            let endpoint = format!("http://127.0.0.1:{port}");
            let mut server = Self { child, endpoint };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(_)) = server.child.try_wait() {
                    break; // moto exited: the port was taken
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    // Listening: make sure it is this child that listens.
                    std::thread::sleep(Duration::from_millis(300));
                    if let Ok(None) = server.child.try_wait() {
                        return Some(server);
                    }
                    break;
                }
                assert!(Instant::now() < deadline, "moto_server did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("moto_server exited on 5 ports in a row");
    }

    /// Creates a bucket (moto accepts unsigned requests).
    pub fn create_bucket(&self, bucket: &str) {
        use std::io::{Read, Write};
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(stream, "PUT /{bucket} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }

    /// The environment every ember process reads its S3 configuration from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "ember".into()),
            ("AWS_SECRET_ACCESS_KEY", "ember-secret".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh server, or `None` (the test then says it is skipped) where
/// `moto_server` is not installed. Under `EMBER_REQUIRE_MOTO=1` a missing server
/// fails the test.
pub fn s3_server() -> Option<S3Server> {
    let server = S3Server::start();
    if server.is_none() {
        assert!(
            std::env::var_os(REQUIRE_MOTO).is_none(),
            "{REQUIRE_MOTO} is set but moto_server cannot be started (pip install 'moto[server]')"
        );
        eprintln!("skipped: moto_server is not installed (pip install 'moto[server]')");
    }
    server
}
