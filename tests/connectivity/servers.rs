//! Throwaway servers on loopback, each in a temporary directory of its own
//! and stopped and removed on drop (also when a test fails): a certificate
//! authority, a PostgreSQL cluster with TLS only, and Redis servers (TLS,
//! replicas, sentinels, cluster nodes). A missing binary fails the test with
//! what to install.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The PostgreSQL server binaries: `TOKENWARDEN_TEST_PG_BIN`, else the
/// newest Debian-style install.
fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("TOKENWARDEN_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql: install \
             postgresql (apt-get install postgresql) or set TOKENWARDEN_TEST_PG_BIN"
        )
    })
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "tokenwarden-{label}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The program, or a failure naming the package that provides it.
pub fn require(program: &str, package: &str) -> PathBuf {
    let found = if program.contains('/') {
        Path::new(program).is_file().then(|| PathBuf::from(program))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|p| p.is_file())
        })
    };
    found.unwrap_or_else(|| {
        panic!("{program} not found: install {package} (apt-get install {package})")
    })
}

fn run(command: &mut Command) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A CA made by the test, and leaf certificates it signs.
pub struct Ca {
    pub dir: TempDir,
    pub cert: PathBuf,
    key: PathBuf,
}

pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let openssl = require("openssl", "openssl");
        let dir = TempDir::new("ca");
        let cert = dir.path().join("ca.crt");
        let key = dir.path().join("ca.key");
        run(Command::new(&openssl)
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", &format!("/CN={name}")])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        Self { dir, cert, key }
    }

    pub fn pem(&self) -> String {
        std::fs::read_to_string(&self.cert).unwrap()
    }

    /// A leaf for `localhost` and 127.0.0.1, for a server (`serverAuth`) or
    /// a client (`clientAuth`).
    pub fn leaf(&self, name: &str, usage: &str) -> Leaf {
        let openssl = require("openssl", "openssl");
        let dir = self.dir.path();
        let (cert, key, csr, ext) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
            dir.join(format!("{name}.csr")),
            dir.join(format!("{name}.ext")),
        );
        std::fs::write(
            &ext,
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage={usage}\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
            ),
        )
        .unwrap();
        run(Command::new(&openssl)
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&csr));
        run(Command::new(&openssl)
            .args(["x509", "-req", "-days", "2", "-CAcreateserial", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&self.cert)
            .arg("-CAkey")
            .arg(&self.key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert));
        Leaf { cert, key }
    }
}

/// PostgreSQL refuses to run as root: as root, the cluster runs as the
/// `postgres` system user.
fn as_root() -> bool {
    run(Command::new("id").arg("-u")).trim() == "0"
}

fn pg_command(program: &str, root: bool) -> Command {
    let path = require(&pg_bin().join(program).display().to_string(), "postgresql");
    if root {
        let mut command = Command::new(require("runuser", "util-linux"));
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

/// A PostgreSQL cluster that accepts only TLS (`ssl = on`, `hostssl` lines
/// only), with a server certificate from `ca`; user `postgres`, trust auth.
pub struct PgTls {
    pub port: u16,
    dir: TempDir,
    root: bool,
}

impl PgTls {
    pub fn start(ca: &Ca) -> Self {
        let root = as_root();
        let dir = TempDir::new("pg-tls");
        let data = dir.path().join("data");
        let leaf = ca.leaf("pg-server", "serverAuth");
        std::fs::copy(&leaf.cert, dir.path().join("server.crt")).unwrap();
        std::fs::copy(&leaf.key, dir.path().join("server.key")).unwrap();
        if root {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()));
        }
        run(Command::new("chmod")
            .arg("600")
            .arg(dir.path().join("server.key")));
        run(pg_command("initdb", root)
            .args(["-U", "postgres", "--auth=trust", "-D"])
            .arg(&data));
        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\n\
             ssl = on\nssl_cert_file = '{dir}/server.crt'\nssl_key_file = '{dir}/server.key'\n\
             fsync = off\nmax_connections = 30\nshared_buffers = 16MB\n",
            dir = dir.path().display()
        );
        append(&data.join("postgresql.conf"), &conf);
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        let server = Self { port, dir, root };
        run(pg_command("pg_ctl", root)
            .args(["-w", "-t", "30", "-l"])
            .arg(server.dir.path().join("log"))
            .arg("-D")
            .arg(&data)
            .arg("start"));
        server
    }

    pub fn url(&self, query: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?{query}",
            self.port
        )
    }
}

impl Drop for PgTls {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl", self.root)
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// One `redis-server` process (a server, a replica, a sentinel or a cluster
/// node), killed on drop.
pub struct RedisProcess {
    pub port: u16,
    child: Option<Child>,
    /// Its working directory, removed on drop.
    _dir: TempDir,
    kept: Vec<TempDir>,
}

impl RedisProcess {
    /// Starts `redis-server` with `args` after the common ones (loopback,
    /// no persistence) and waits until it answers on `port`.
    pub fn start(port: u16, args: &[String], tls: Option<&Leaf>, ca: Option<&Ca>) -> Self {
        let server = require("redis-server", "redis-server");
        require("redis-cli", "redis-tools");
        let dir = TempDir::new("redis");
        let sentinel = args.iter().any(|a| a == "--sentinel");
        let mut command = Command::new(server);
        command.args(args).args(["--bind", "127.0.0.1"]);
        if !sentinel {
            command.args(["--save", "", "--appendonly", "no"]);
        }
        command
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let (Some(leaf), Some(ca)) = (tls, ca) {
            command
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(&leaf.cert)
                .arg("--tls-key-file")
                .arg(&leaf.key)
                .arg("--tls-ca-cert-file")
                .arg(&ca.cert);
        } else if !sentinel {
            command.args(["--port", &port.to_string()]);
        }
        let child = command.spawn().expect("redis-server starts");
        let process = Self {
            port,
            child: Some(child),
            _dir: dir,
            kept: Vec::new(),
        };
        process.wait_until_listening();
        process
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Keeps `dir` (a config file the process rewrites) until the process
    /// is gone.
    pub fn keep(&mut self, dir: TempDir) {
        self.kept.push(dir);
    }

    /// Kills the process at once, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `redis-cli` against this process (plain TCP).
    pub fn cli(&self, args: &[&str]) -> String {
        run(Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args))
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `check` holds, failing after `within`.
pub fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
