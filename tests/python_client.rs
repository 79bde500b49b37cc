//! The gRPC API from outside Rust: `tests/python/host_client.py` drives a live fabric's
//! `fcsim.v1.Host` service with Python grpcio (stubs generated from `proto/` at run
//! time), and checks health and reflection without the .proto files;
//! `tests/python/copy_client.py` manages a copy pair through an array's `fcsim.v1.Copy`;
//! `tests/python/switch_copy_client.py` one run by an intelligent switch.
//!
//! Needs `python3` with `pip install -r tests/python/requirements.txt` (`.ci/run` does
//! it). Skipped only when there is no `python3` at all.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fcsim_proto::v1 as pb;
use pb::control_client::ControlClient;
use tonic::transport::Channel;

mod common;
use common::Up;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Waits until `fcsim up` answers Control/Status (it serves once setup has run).
fn wait_for_control(up: &mut Up, addr: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = up.child.try_wait().unwrap() {
                panic!("fcsim up exited ({status}) before serving {addr}");
            }
            assert!(Instant::now() < deadline, "fcsim up never served {addr}");
            let ch = Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_timeout(Duration::from_secs(1))
                .connect()
                .await;
            if let Ok(ch) = ch {
                let status = ControlClient::new(ch).status(pb::StatusRequest {}).await;
                if let Ok(s) = status {
                    assert_eq!(s.into_inner().mode, "live");
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// Runs `cmd` to completion within `limit`, returning (success, stdout, stderr).
fn run_with_limit(mut cmd: Command, limit: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let (ok, timed_out) = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break (status.success(), false);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break (false, true);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_t.join().unwrap();
    let mut stderr = err_t.join().unwrap();
    if timed_out {
        stderr.push_str(&format!("\n(killed after {limit:?})"));
    }
    (ok, stdout, stderr)
}

/// Whether python3 with the pinned packages is there: `false` (skip) only when there is
/// no python3 at all; missing packages fail (CI installs them).
fn python_ready() -> bool {
    match Command::new("python3").arg("--version").output() {
        Err(e) => {
            println!("skipped: no python3 on PATH ({e})");
            return false;
        }
        Ok(o) => assert!(o.status.success(), "python3 --version failed: {o:?}"),
    }
    let probe = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools, grpc_reflection"])
        .output()
        .expect("run python3");
    assert!(
        probe.status.success(),
        "python3 lacks grpcio/grpcio-tools/grpcio-reflection; \
         run: pip install -r tests/python/requirements.txt\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    true
}

/// Starts `fcsim up` on library scenario `scenario` and runs `tests/python/<script>`
/// against its Control endpoint.
fn run_python_client(scenario: &str, script: &str) {
    if !python_ready() {
        return;
    }
    let mut up = Up::start(scenario);
    let addr = up.addr.clone();
    wait_for_control(&mut up, &addr);

    let mut py = Command::new("python3");
    py.arg(Path::new(REPO).join("tests/python").join(script))
        .arg(&addr)
        .current_dir(REPO)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    let (ok, stdout, stderr) = run_with_limit(py, Duration::from_secs(300));
    print!("{stdout}");
    assert!(
        ok,
        "tests/python/{script} {addr} failed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    drop(up);
}

#[test]
fn python_grpcio_drives_the_host_service() {
    run_python_client("host-io-basics.json", "host_client.py");
}

#[test]
fn python_grpcio_manages_a_copy_pair() {
    run_python_client("copy-basics.json", "copy_client.py");
}

#[test]
fn python_grpcio_manages_a_pair_at_an_intelligent_switch() {
    run_python_client("vsw-pairs.json", "switch_copy_client.py");
}
