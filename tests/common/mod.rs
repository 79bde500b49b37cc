//! Helpers shared by the tests: `fcsim up` as a user starts it ([`Up`]) and the
//! property tests' harness ([`harness`]).

pub mod harness;

use std::process::{Child, Command, Stdio};

/// A running `fcsim up` on a free loopback port; killed when dropped.
pub struct Up {
    /// The `fcsim up` process.
    pub child: Child,
    /// Its Control endpoint, `127.0.0.1:port`.
    pub addr: String,
}

impl Up {
    /// Starts `fcsim up` on `scenarios/library/<file>`.
    pub fn start(file: &str) -> Up {
        Up::start_path(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scenarios/library")
                .join(file),
        )
    }

    /// Starts `fcsim up` on the scenario file at `path` (e.g. one a test wrote).
    pub fn start_path(path: &std::path::Path) -> Up {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_fcsim"))
            .arg("up")
            .arg(path)
            .args(["--control", &addr])
            .stdout(Stdio::null())
            .spawn()
            .expect("start fcsim up");
        Up { child, addr }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
