//! What a booted instance takes from its metadata service at its first boot, as cloud-init
//! does: the launch key pair's public key (`meta-data/public-keys/0/openssh-key`, read over an
//! IMDSv2 session), added to the image's default user's `~/.ssh/authorized_keys`. The default
//! user is the image's first regular account (the lowest uid from 1000 on with a home
//! directory: `admin` on the Debian AMI, as on AWS), else root.
//!
//! Runs inside the instance (after `pivot_root`, in its network namespace), once per instance:
//! an image made from this instance keeps the key, and an instance launched from that image
//! adds its own.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// The metadata service, as an instance reaches it.
const METADATA: &str = "169.254.169.254:80";
/// How long the service gets to answer, over every try.
const PATIENCE: Duration = Duration::from_secs(10);

/// Installs the launch key once per instance; `state` is the instance's state directory
/// (`/var/lib/ebs-init/instances/<id>`). Prints what it did to the console.
pub fn install_public_key(state: &Path, instance_id: &str) {
    let done = state.join("public-keys.done");
    if done.exists() {
        return;
    }
    let key = match fetch_key(instance_id) {
        Ok(Some(key)) => key,
        Ok(None) => {
            println!("ebs-init: the instance has no key pair");
            let _ = fs::create_dir_all(state).and_then(|()| fs::write(&done, b""));
            return;
        }
        Err(e) => {
            // Not marked: the next boot tries again.
            println!("ebs-init: the metadata service did not give the public key: {e}");
            return;
        }
    };
    let user = default_user();
    match authorize(&user, &key) {
        Ok(path) => {
            println!(
                "ebs-init: the key pair's public key authorises {} ({})",
                user.name,
                path.display()
            );
            let _ = fs::create_dir_all(state).and_then(|()| fs::write(&done, b""));
        }
        Err(e) => println!("ebs-init: authorizing the key pair for {}: {e}", user.name),
    }
}

/// The public key line, `None` if the instance was launched without a key pair. The service
/// must first know the instance by its id (a 404 for the key means "no key pair" only then).
fn fetch_key(instance_id: &str) -> io::Result<Option<String>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let read = async {
                let (status, id) = session_get("/latest/meta-data/instance-id").await?;
                if status != 200 || id != instance_id.as_bytes() {
                    return Err(io::Error::other(format!(
                        "the service does not know this instance yet (HTTP {status})"
                    )));
                }
                session_get("/latest/meta-data/public-keys/0/openssh-key").await
            };
            match tokio::time::timeout_at(deadline, read).await {
                Ok(Ok((200, body))) => {
                    return Ok(Some(String::from_utf8_lossy(&body).trim().to_string()));
                }
                Ok(Ok((404, _))) => return Ok(None),
                Ok(Ok((status, _))) => {
                    return Err(io::Error::other(format!("HTTP {status}")));
                }
                Ok(Err(e)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "metadata service not reachable yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer")),
            }
        }
    })
}

/// An IMDSv2 session token, then `GET path` with it: (status, body).
async fn session_get(path: &str) -> io::Result<(u16, Bytes)> {
    let token = request(
        Request::put("/latest/api/token").header("x-aws-ec2-metadata-token-ttl-seconds", "60"),
    )
    .await?;
    if token.0 != 200 {
        return Err(io::Error::other(format!("token request: HTTP {}", token.0)));
    }
    let token = String::from_utf8_lossy(&token.1).to_string();
    request(Request::get(path).header("x-aws-ec2-metadata-token", token)).await
}

async fn request(builder: http::request::Builder) -> io::Result<(u16, Bytes)> {
    let stream = tokio::net::TcpStream::connect(METADATA).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(conn);
    let req = builder
        .header(http::header::HOST, "169.254.169.254")
        .body(Empty::<Bytes>::new())
        .map_err(io::Error::other)?;
    let resp = sender.send_request(req).await.map_err(io::Error::other)?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(io::Error::other)?
        .to_bytes();
    Ok((status, body))
}

/// An account of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
struct User {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// The image's default user (see the module's doc).
fn default_user() -> User {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    pick_default_user(&passwd).unwrap_or(User {
        name: "root".into(),
        uid: 0,
        gid: 0,
        home: "/root".into(),
    })
}

fn pick_default_user(passwd: &str) -> Option<User> {
    passwd
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(User {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: PathBuf::from(f[5]),
            })
        })
        // 65534 is `nobody`.
        .filter(|u| (1000..65534).contains(&u.uid) && u.home.starts_with("/home"))
        .min_by_key(|u| u.uid)
}

/// Appends `key` to the user's `authorized_keys` unless it is there; returns the file.
fn authorize(user: &User, key: &str) -> io::Result<PathBuf> {
    let dir = user.home.join(".ssh");
    fs::create_dir_all(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    chown(&dir, Some(user.uid), Some(user.gid))?;
    let path = dir.join("authorized_keys");
    let mut text = fs::read_to_string(&path).unwrap_or_default();
    if !text.lines().any(|l| l.trim() == key) {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(key);
        text.push('\n');
        fs::write(&path, &text)?;
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    chown(&path, Some(user.uid), Some(user.gid))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_user_is_the_first_regular_account() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                      sshd:x:101:65534::/run/sshd:/usr/sbin/nologin\n\
                      zed:x:1001:1001::/home/zed:/bin/bash\n\
                      admin:x:1000:1000::/home/admin:/bin/bash\n";
        let u = pick_default_user(passwd).unwrap();
        assert_eq!((u.name.as_str(), u.uid), ("admin", 1000));
        assert_eq!(pick_default_user("root:x:0:0:root:/root:/bin/bash\n"), None);
    }

    #[test]
    fn keys_are_added_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let (uid, gid) = (nix_uid(), nix_gid());
        let user = User {
            name: "me".into(),
            uid,
            gid,
            home: dir.path().to_path_buf(),
        };
        let path = authorize(&user, "ssh-ed25519 AAAA demo").unwrap();
        authorize(&user, "ssh-ed25519 AAAA demo").unwrap();
        authorize(&user, "ssh-ed25519 BBBB other").unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "ssh-ed25519 AAAA demo\nssh-ed25519 BBBB other\n"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    fn nix_uid() -> u32 {
        // SAFETY: getuid has no preconditions.
        unsafe { libc::getuid() }
    }

    fn nix_gid() -> u32 {
        // SAFETY: getgid has no preconditions.
        unsafe { libc::getgid() }
    }
}
