//! Test support: a real S3-compatible server (moto, `pip install 'moto[server]'`) on
//! loopback, so store tests run against S3 as well as the local file system. Built for this
//! crate's tests and, with the `testing` feature, for other crates' tests.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::store::Store;

/// A `moto_server` child process and one bucket in it; killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
    bucket: String,
}

impl Moto {
    /// Starts moto with a fresh bucket, or skips (returns `None`) if it is not installed;
    /// under `EBS_REQUIRE_INTEROP=1` a missing moto fails the test instead.
    pub fn start() -> Option<Moto> {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("moto_server").is_file()));
        if !found {
            assert!(
                std::env::var("EBS_REQUIRE_INTEROP").as_deref() != Ok("1"),
                "EBS_REQUIRE_INTEROP=1 but moto_server is not installed (pip install 'moto[server]')"
            );
            let _ = writeln!(std::io::stderr(), "SKIPPED: moto_server not installed");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut moto = Moto {
            child,
            port,
            bucket: format!(
                "b{:x}{:x}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto.create_bucket();
        Some(moto)
    }

    fn create_bucket(&mut self) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.bucket, self.port
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "create bucket: {reply}");
    }

    /// The URL of a store under prefix `name` of this moto's bucket.
    pub fn url(&self, name: &str) -> String {
        format!(
            "s3://{}/{name}?endpoint=http://127.0.0.1:{}&allow_http=true&access_key_id=test&secret_access_key=test&region=us-east-1",
            self.bucket, self.port
        )
    }

    /// A store under prefix `name` of this moto's bucket.
    pub fn store(&self, name: &str) -> Store {
        Store::open(&self.url(name)).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
