//! Private Redis and ClickHouse server processes.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

/// A port that was free a moment ago on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

/// Finds a server binary on PATH or in the usual Debian locations.
fn binary(name: &str) -> PathBuf {
    let env_name = format!("TALLY_{}", name.to_ascii_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(env_name) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: run scripts/services install"))
}

/// Starts `cmd` and a watchdog that kills it and removes `dir` once this process is gone.
fn spawn_watched(mut cmd: Command, dir: &Path) -> Child {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    // Exits quietly when the server is stopped by the test (the directory stays for a
    // restart); cleans up when the test process is gone.
    let script = format!(
        "while kill -0 {me} 2>/dev/null && kill -0 {child} 2>/dev/null; do sleep 0.5; done; \
         if ! kill -0 {me} 2>/dev/null; then kill -9 {child} 2>/dev/null; sleep 0.2; rm -rf '{dir}'; fi",
        me = std::process::id(),
        child = child.id(),
        dir = dir.display(),
    );
    // The watchdog must outlive this process, so it is deliberately never waited for.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start watchdog");
    child
}

/// How long a ClickHouse server may take to answer `/ping` after it is started. A few
/// seconds when the machine is idle; on a fresh CI machine a cluster's four servers start
/// beside the release build and the other suites, and one took over a minute there.
const CLICKHOUSE_STARTUP: Duration = Duration::from_secs(240);

fn wait_until(what: &str, deadline: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < deadline,
            "{what} did not become ready in {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_child(child: &mut Child, graceful: bool) {
    if graceful {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A private `redis-server` with AOF on, on a free loopback port.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
    cluster: bool,
    /// TLS only, asking clients for a certificate: (CA, server certificate, its key, a
    /// client certificate and key for the readiness check).
    tls: Option<[PathBuf; 5]>,
    /// The primary's port, for a replica.
    replica_of: Option<u16>,
}

impl RedisServer {
    /// Starts a new private server and waits until it answers.
    pub fn start() -> Self {
        Self::start_node(false)
    }

    /// Starts a private server that speaks only TLS (`rediss://`) with the certificates of
    /// `certs`, and asks every client for a certificate signed by their CA.
    pub fn start_tls(certs: &crate::TestCerts) -> Self {
        Self::start_with(
            false,
            Some([
                certs.ca(),
                certs.server_cert(),
                certs.server_key(),
                certs.client_cert(),
                certs.client_key(),
            ]),
            None,
        )
    }

    fn start_node(cluster: bool) -> Self {
        Self::start_with(cluster, None, None)
    }

    /// Starts a replica of `primary` and waits until it has copied the primary's data.
    pub fn start_replica_of(primary: &RedisServer) -> Self {
        let server = Self::start_with(false, None, Some(primary.port));
        wait_until("the replica's first sync", Duration::from_secs(20), || {
            server.info("replication").contains("master_link_status:up")
        });
        server
    }

    /// The text of `INFO section` (empty when the server does not answer).
    pub fn info(&self, section: &str) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "info", section])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn start_with(cluster: bool, tls: Option<[PathBuf; 5]>, replica_of: Option<u16>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tally-redis-")
            .tempdir()
            .unwrap();
        let server = Self {
            port: free_port(),
            dir,
            child: Mutex::new(None),
            cluster,
            tls,
            replica_of,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT/DB` (`rediss://` for a TLS server).
    pub fn url(&self, db: u32) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's data directory (its append-only files are in `appendonlydir/`).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Starts the server again (same port and data) if it is stopped.
    pub fn restart(&self) {
        let mut child = self.child.lock().unwrap();
        if child.is_some() {
            return;
        }
        let mut cmd = Command::new(binary("redis-server"));
        match &self.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some([ca, cert, key, ..]) => cmd
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .args(["--tls-auth-clients", "yes"]),
        };
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--dir", &self.dir.path().display().to_string()])
            .args(["--databases", &super::redis::DATABASES.to_string()])
            // As config/redis.conf: a limit, so Tally's memory warning stays quiet.
            .args(["--maxmemory", "2gb", "--maxmemory-policy", "noeviction"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
            ])
            .args([
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
                "--loglevel",
                "warning",
            ])
            .args([
                "--logfile",
                &self.dir.path().join("redis.log").display().to_string(),
            ]);
        if let Some(primary) = self.replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        if self.cluster {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--cluster-node-timeout", "2000"]);
        }
        *child = Some(spawn_watched(cmd, self.dir.path()));
        let port = self.port;
        if let Some([ca, _, _, cert, key]) = &self.tls {
            wait_until("redis-server (TLS)", Duration::from_secs(20), || {
                Command::new("redis-cli")
                    .args(["--tls", "-p", &port.to_string()])
                    .arg("--cacert")
                    .arg(ca)
                    .arg("--cert")
                    .arg(cert)
                    .arg("--key")
                    .arg(key)
                    .arg("ping")
                    .output()
                    .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
            });
            return;
        }
        wait_until("redis-server", Duration::from_secs(20), || {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0u8; 7];
            s.write_all(b"PING\r\n").is_ok()
                && s.read_exact(&mut buf).is_ok()
                && &buf == b"+PONG\r\n"
        });
    }

    /// Stops the server with SIGTERM (AOF is flushed) and waits for it to exit.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            stop_child(&mut child, true);
        }
    }

    /// Kills the server with SIGKILL.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            stop_child(&mut child, false);
        }
    }
}

/// A private `clickhouse-server` on free loopback ports, user `default` without password.
pub struct ClickHouseServer {
    http_port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
    /// How much of the error log the crash check has read past (see `revive_if_crashed`).
    log_seen: Mutex<usize>,
    /// Its CA, when it speaks only HTTPS.
    tls_ca: Option<PathBuf>,
}

impl ClickHouseServer {
    /// Starts a new private server and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a private server that speaks only HTTPS, with the server certificate of `certs`.
    pub fn start_tls(certs: &crate::TestCerts) -> Self {
        Self::start_with(Some(certs))
    }

    fn start_with(certs: Option<&crate::TestCerts>) -> Self {
        Self::start_node(certs, free_port(), "")
    }

    /// Starts a server with its native protocol on `tcp_port` (other servers of a cluster
    /// reach it there) and `extra` XML in its configuration.
    fn start_node(certs: Option<&crate::TestCerts>, tcp_port: u16, extra: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tally-clickhouse-")
            .tempdir()
            .unwrap();
        let http_port = free_port();
        let d = dir.path().display().to_string();
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/log/server.log</log><errorlog>{d}/log/error.log</errorlog><size>10M</size><count>1</count></logger>
  {listen}
  <tcp_port>{tcp_port}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <keep_alive_timeout>3</keep_alive_timeout>
  {extra}
</yandex>
"#,
            listen = match certs {
                None => format!("<http_port>{http_port}</http_port>"),
                Some(c) => format!(
                    "<https_port>{http_port}</https_port>\n  <openSSL><server>\
                     <certificateFile>{}</certificateFile><privateKeyFile>{}</privateKeyFile>\
                     <verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile>\
                     <cacheSessions>true</cacheSessions><disableProtocols>sslv2,sslv3</disableProtocols>\
                     <preferServerCiphers>true</preferServerCiphers></server></openSSL>",
                    c.server_cert().display(),
                    c.server_key().display()
                ),
            },
        );
        let users = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
"#;
        std::fs::write(dir.path().join("config.xml"), config).unwrap();
        std::fs::write(dir.path().join("users.xml"), users).unwrap();
        let server = Self {
            http_port,
            dir,
            child: Mutex::new(None),
            log_seen: Mutex::new(0),
            tls_ca: certs.map(|c| c.ca()),
        };
        server.restart();
        server
    }

    /// `http://127.0.0.1:PORT` (`https://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.http_port)
    }

    /// The server process, started (not yet answering). What its error log held before is
    /// not read by the crash check.
    fn spawn(&self) -> Child {
        let log = self.dir.path().join("log/error.log");
        *self.log_seen.lock().unwrap() = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
        let mut cmd = Command::new(binary("clickhouse-server"));
        cmd.arg(format!(
            "--config-file={}",
            self.dir.path().join("config.xml").display()
        ))
        .current_dir(self.dir.path());
        spawn_watched(cmd, self.dir.path())
    }

    /// Starts the server again, without waiting for it, if it exited by itself (crashed:
    /// a [`stop`](Self::stop) or [`kill`](Self::kill) is not a crash). Whether it did.
    /// A server whose error log says it is terminating counts as crashed too: 18.16's
    /// DDLWorker has been seen to end that way ("Unexpected ZooKeeper error: Node exists")
    /// while the process lived on, answering `/ping` but running no more `ON CLUSTER`
    /// statements, so a migration waited for it until its timeout.
    fn revive_if_crashed(&self) -> bool {
        let mut child = self.child.lock().unwrap();
        let Some(running) = child.as_mut() else {
            return false;
        };
        let log = self.dir.path().join("log/error.log");
        let seen = *self.log_seen.lock().unwrap();
        let terminating = std::fs::read(&log)
            .map(|text| {
                text.get(seen..)
                    .is_some_and(|new| new.windows(13).any(|w| w == b". Terminating"))
            })
            .unwrap_or(false);
        if terminating {
            let _ = running.kill();
        }
        if !matches!(running.try_wait(), Ok(Some(_))) && !terminating {
            return false;
        }
        let _ = running.wait();
        *child = Some(self.spawn());
        true
    }

    /// Starts the server again (same ports and data) if it is stopped.
    pub fn restart(&self) {
        let mut child = self.child.lock().unwrap();
        if child.is_some() {
            return;
        }
        *child = Some(self.spawn());
        let port = self.http_port;
        if let Some(ca) = &self.tls_ca {
            wait_until("clickhouse-server (HTTPS)", CLICKHOUSE_STARTUP, || {
                Command::new("curl")
                    .args(["-s", "--max-time", "2", "--cacert"])
                    .arg(ca)
                    .arg(format!("https://127.0.0.1:{port}/ping"))
                    .output()
                    .is_ok_and(|o| o.stdout == b"Ok.\n")
            });
            return;
        }
        wait_until("clickhouse-server", CLICKHOUSE_STARTUP, || {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut reply = String::new();
            s.write_all(b"GET /ping HTTP/1.0\r\n\r\n").is_ok()
                && s.read_to_string(&mut reply).is_ok()
                && reply.ends_with("Ok.\n")
        });
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            stop_child(&mut child, true);
        }
    }

    /// Kills the server with SIGKILL.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            stop_child(&mut child, false);
        }
    }
}

/// A private Redis Cluster of three masters (no replicas), slots spread by
/// `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them and waits for `cluster_state:ok`.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_node(true)).collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for node in &nodes {
            wait_until("cluster_state:ok", Duration::from_secs(30), || {
                Command::new("redis-cli")
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
        }
        Self { nodes }
    }

    /// The nodes as a comma-separated URL list (`redis.url` with `redis.cluster = true`).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A primary, its replica and a Redis Sentinel (Debian's `redis-sentinel`) watching them as
/// `mymaster` with a quorum of one: the primary is taken as down after a second without an
/// answer, and the replica promoted.
pub struct RedisSentinel {
    pub primary: RedisServer,
    pub replica: RedisServer,
    port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

impl RedisSentinel {
    /// The name the sentinel knows the primary by.
    pub const MASTER_NAME: &'static str = "mymaster";

    /// Starts the three processes and waits until the sentinel knows the replica.
    pub fn start() -> Self {
        let primary = RedisServer::start();
        let replica = RedisServer::start_replica_of(&primary);
        let dir = tempfile::Builder::new()
            .prefix("tally-sentinel-")
            .tempdir()
            .unwrap();
        let port = free_port();
        // The sentinel rewrites its file as it learns the topology.
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/sentinel.log\n\
                 sentinel monitor {name} 127.0.0.1 {primary} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 4000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir = dir.path().display(),
                name = Self::MASTER_NAME,
                primary = primary.port,
            ),
        )
        .unwrap();
        let mut cmd = Command::new(binary("redis-sentinel"));
        cmd.arg(&config);
        let child = spawn_watched(cmd, dir.path());
        let sentinel = Self {
            primary,
            replica,
            port,
            dir,
            child: Mutex::new(Some(child)),
        };
        wait_until(
            "the sentinel to see the replica",
            Duration::from_secs(30),
            || {
                sentinel
                    .ask(&["sentinel", "replicas", Self::MASTER_NAME])
                    .contains(&format!("{}", sentinel.replica.port))
            },
        );
        sentinel
    }

    /// `redis://127.0.0.1:PORT`, the sentinel's address.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port of the server the sentinel names as the primary now.
    pub fn primary_port(&self) -> Option<u16> {
        self.ask(&["sentinel", "get-master-addr-by-name", Self::MASTER_NAME])
            .lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
    }

    fn ask(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The sentinel's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default()
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            stop_child(&mut child, false);
        }
    }
}

/// A private ZooKeeper (Debian's `zookeeper`, run with the system's Java) on a free
/// loopback port, for replicated ClickHouse tables and `ON CLUSTER` statements.
pub struct ZooKeeper {
    port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

impl ZooKeeper {
    /// Starts it and waits until it answers `ruok`.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tally-zookeeper-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let d = dir.path().display();
        let config = dir.path().join("zoo.cfg");
        std::fs::write(
            &config,
            format!(
                "tickTime=500\ndataDir={d}/data\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\nmaxClientCnxns=0\n4lw.commands.whitelist=ruok\n"
            ),
        )
        .unwrap();
        let jars = std::env::var("TALLY_ZOOKEEPER_JARS")
            .unwrap_or_else(|_| "/usr/share/java/zookeeper.jar:/usr/share/java/*".into());
        let mut cmd = Command::new("java");
        cmd.args(["-Xmx256m", "-cp", &jars])
            .arg(format!("-Dzookeeper.log.dir={d}"))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&config);
        let child = spawn_watched(cmd, dir.path());
        wait_until("zookeeper", Duration::from_secs(60), || {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut reply = String::new();
            s.write_all(b"ruok").is_ok() && s.read_to_string(&mut reply).is_ok() && reply == "imok"
        });
        Self {
            port,
            dir,
            child: Mutex::new(Some(child)),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            stop_child(&mut child, false);
        }
        let _ = &self.dir;
    }
}

/// A private ClickHouse cluster `tally` of two shards of two replicas each (four
/// `clickhouse-server` processes) coordinated by a private [`ZooKeeper`]. Node `i` is
/// replica `i % 2 + 1` of shard `i / 2 + 1`.
///
/// The cluster restarts a node that crashes, as systemd would in production: Debian's
/// 18.16 server has been seen to die of a segmentation fault in ZooKeeper code while
/// several replicas of a table were being created at once, leaving a migration waiting for
/// it (`distributed_ddl_task_timeout`).
pub struct ClickHouseCluster {
    pub nodes: std::sync::Arc<[ClickHouseServer]>,
    pub zookeeper: ZooKeeper,
    supervisor: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for ClickHouseCluster {
    fn drop(&mut self) {
        self.supervisor
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Restarts `nodes` that crash, until `done`.
fn supervise(
    nodes: std::sync::Arc<[ClickHouseServer]>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    std::thread::spawn(move || {
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            for (i, node) in nodes.iter().enumerate() {
                if node.revive_if_crashed() {
                    eprintln!("clickhouse cluster: node {i} exited by itself; restarted");
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
}

impl ClickHouseCluster {
    /// The cluster's name in the servers' `remote_servers`.
    pub const NAME: &'static str = "tally";

    /// Starts ZooKeeper and the four servers.
    pub fn start() -> Self {
        let zookeeper = ZooKeeper::start();
        let tcp: Vec<u16> = (0..4).map(|_| free_port()).collect();
        let replica = |i: usize| {
            format!(
                "<replica><host>127.0.0.1</host><port>{}</port></replica>",
                tcp[i]
            )
        };
        let shards: String = (0..2)
            .map(|s| {
                format!(
                    "<shard><internal_replication>true</internal_replication>{}{}</shard>",
                    replica(2 * s),
                    replica(2 * s + 1)
                )
            })
            .collect();
        let nodes: std::sync::Arc<[ClickHouseServer]> = (0..4)
            .map(|i| {
                let extra = format!(
                    "<remote_servers><{name}>{shards}</{name}></remote_servers>\n  \
                     <zookeeper><node><host>127.0.0.1</host><port>{zk}</port></node></zookeeper>\n  \
                     <macros><shard>{shard}</shard><replica>r{replica}</replica></macros>\n  \
                     <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>\n  \
                     <interserver_http_port>{interserver}</interserver_http_port>\n  \
                     <interserver_http_host>127.0.0.1</interserver_http_host>",
                    name = Self::NAME,
                    zk = zookeeper.port,
                    shard = i / 2 + 1,
                    replica = i % 2 + 1,
                    interserver = free_port(),
                );
                ClickHouseServer::start_node(None, tcp[i], &extra)
            })
            .collect();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        supervise(std::sync::Arc::clone(&nodes), done.clone());
        Self {
            nodes,
            zookeeper,
            supervisor: done,
        }
    }
}
