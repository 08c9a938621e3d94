use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Azurite blob endpoint for tests, from `MOVIELAKE_TEST_AZURITE`. Under CI its absence is a
/// failure (CI starts Azurite); on a laptop the Azure half of the suite says why it skipped.
pub fn azurite_endpoint() -> Option<String> {
    match std::env::var("MOVIELAKE_TEST_AZURITE") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but MOVIELAKE_TEST_AZURITE is not: .ci/run must start Azurite and export it")
        }
        _ => {
            eprintln!(
                "SKIPPED: Azure half of the lake suite: set MOVIELAKE_TEST_AZURITE (scripts/test.sh starts Azurite and sets it)"
            );
            None
        }
    }
}

/// The PostgreSQL server for tests, from `MOVIELAKE_TEST_POSTGRES`. Under CI its absence is a
/// failure (scripts/test.sh starts one); elsewhere the PostgreSQL tests say why they skipped.
pub fn postgres_url() -> Option<String> {
    match std::env::var("MOVIELAKE_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but MOVIELAKE_TEST_POSTGRES is not: scripts/test.sh must start PostgreSQL and export it")
        }
        _ => {
            eprintln!(
                "SKIPPED: PostgreSQL tests: set MOVIELAKE_TEST_POSTGRES (scripts/test.sh starts a server with scripts/postgres.sh)"
            );
            None
        }
    }
}

/// A unique prefix per test run, so runs against one Azurite never see each other's objects.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}-{}-{nanos}", std::process::id())
}

/// A running `movielake serve`, killed when dropped.
pub struct Server {
    pub port: u16,
    child: Child,
}

impl Server {
    pub fn start(lake: &str, dir: &Path) -> Server {
        Server::start_with(lake, dir, &[])
    }

    /// With these app settings too.
    pub fn start_with(lake: &str, dir: &Path, settings: &[(&str, &str)]) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
        let child = Command::new(env!("CARGO_BIN_EXE_movielake"))
            .arg("serve")
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("MOVIELAKE_LAKE", lake)
            .env("MOVIELAKE_CONTRACTS", contracts)
            .env_remove("MOVIELAKE_LAKE_SAS")
            .env_remove("MOVIELAKE_SQL_DATABASE")
            .envs(settings.iter().copied())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start movielake serve");
        let mut server = Server { port, child };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("movielake serve exited early: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("movielake serve did not listen on {} within 30 s", self.port);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `app` on an ephemeral 127.0.0.1 port until the returned sender is dropped or fired
/// (stand-ins for TMDB and Event Grid in the tests).
pub async fn spawn_router(app: axum::Router) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    (addr, stop)
}
