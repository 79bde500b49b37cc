//! `fcsim`: the command line. A thin layer: parse, set up tracing (stderr), call the
//! library, print. The user-facing timeline and tables go to stdout.

mod bench;
mod bench_copy;
mod bench_io;
mod bench_iscsi;
mod bench_offload;
mod bench_recovery;
mod bench_sim;
mod capture_cli;
mod client;
mod copy_cli;
mod host_cli;
mod virt_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A Fibre-Channel-style SAN simulator: switches, arrays, hosts and copy services as
/// gRPC-connected nodes.
#[derive(Parser)]
#[command(name = "fcsim", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario: build the fabric, play its steps, print the timeline and summary.
    /// Exits non-zero if a check failed.
    Run {
        /// Scenario JSON file.
        file: PathBuf,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Write the JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// One OS process per node (`fcsim node`), real TCP, real time, SIGKILL crashes.
        #[arg(long, conflicts_with = "live")]
        processes: bool,
        /// All nodes in this process on loopback TCP in real time (instead of simulation).
        #[arg(long)]
        live: bool,
        /// Keep array LUs in files in this directory (durable across crashes).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Capture every frame on the tapped ports into this pcap file (LINKTYPE_FC_2;
        /// open it in Wireshark). Timestamps are fabric time in simulation, wall time
        /// with --live or --processes.
        #[arg(long, value_name = "FILE")]
        pcap: Option<PathBuf>,
        /// Ports to tap, `SW:PORT,...` (any node's port may be named). Default: one end
        /// of every cable, its switch port.
        #[arg(
            long,
            value_name = "SW:PORT,...",
            value_delimiter = ',',
            requires = "pcap"
        )]
        capture: Vec<String>,
    },
    /// Validate scenario files; every error is reported with line:column.
    Check {
        /// Scenario JSON files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Start a fabric from a topology or scenario file and serve it until Ctrl-C.
    Up {
        /// Topology or scenario JSON file (its topology and setup are used).
        file: PathBuf,
        /// Address of the Control endpoint.
        #[arg(long, default_value = client::DEFAULT_CONTROL)]
        control: String,
        /// One OS process per node instead of one process for all.
        #[arg(long)]
        processes: bool,
        /// Keep array LUs in files in this directory (durable across crashes).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run one node (used by `--processes`; reads its node spec JSON from a file).
    Node {
        /// Node spec JSON file written by the launcher.
        #[arg(long)]
        spec: PathBuf,
    },
    /// Inspect a running fabric (switch views after Brocade FOS; an intelligent switch's
    /// TM, TF, virtual LUs and operations).
    Ctl {
        #[arg(long, default_value = client::DEFAULT_CONTROL, global = true)]
        control: String,
        #[command(subcommand)]
        view: client::CtlCmd,
    },
    /// Inject a fault into a running fabric.
    Fault {
        #[arg(long, default_value = client::DEFAULT_CONTROL, global = true)]
        control: String,
        #[command(subcommand)]
        fault: client::FaultCmd,
    },
    /// Host commands on a running fabric: devices, INQUIRY, READ, WRITE, EXTENDED COPY,
    /// workloads.
    Host {
        #[arg(long, default_value = client::DEFAULT_CONTROL, global = true)]
        control: String,
        /// The host node that issues the commands.
        #[arg(long)]
        host: String,
        #[command(subcommand)]
        cmd: host_cli::HostCmd,
    },
    /// Copy services of the arrays: create, split, resync and delete pairs, watch their
    /// copies, take over at the secondary; back a volume up to tape with a server-free
    /// EXTENDED COPY and ask for its results.
    Copy {
        #[arg(long, default_value = client::DEFAULT_CONTROL, global = true)]
        control: String,
        #[command(subcommand)]
        cmd: copy_cli::CopyCmd,
    },
    /// Benchmarks: measured side by side in one run, reported as tables and ratios
    /// (wall-clock numbers; never part of the tests).
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
    /// Print a scenario's topology: nodes, WWNs, domains, links and their latency.
    Topo {
        /// Topology or scenario JSON file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// 4 KiB random read/write IOPS and p50/p99 latency, host → switch → array, in
    /// embedded live mode and in processes mode; with `--virtual`, a virtual LU through
    /// an intelligent switch against the direct path, both live, with the overhead.
    Io {
        /// I/Os per measured point.
        #[arg(long, default_value_t = 20_000)]
        count: u64,
        /// Queue depths to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        qd: Vec<u32>,
        /// Compare a virtual LU of an intelligent switch with the direct path (host →
        /// plain switch → array LU), both in embedded live mode, instead of live with
        /// processes.
        #[arg(long = "virtual")]
        virtual_lu: bool,
        /// Add `tgt` serving a file over iSCSI on loopback as a third path (implies
        /// `--virtual`): a private `tgtd` is started (root and the `tgt` package needed;
        /// scripts/bench-tgt.sh installs it) and measured in turns with both fcsim paths,
        /// with fcsim ÷ tgt ratios.
        #[arg(long)]
        tgt: bool,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Volume copy between two virtual LUs on one array, in simulation: delegated to
    /// the array (EXTENDED COPY) against copied by the switch (engine mode `local`).
    Offload {
        /// Size of the copy in GiB (fractions allowed, rounded to whole MiB; at most 8).
        #[arg(long, default_value_t = 1.0)]
        gib: f64,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Seed of the simulation.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Scale: converge a ring-with-chords fabric in simulation, time name-server
    /// queries, and time the reroute after an ISL cut.
    Fabric {
        /// Number of switches (domains 1..=N), at most 239.
        #[arg(long, default_value_t = 239)]
        switches: u32,
        /// Total N_Ports, spread evenly over one host per switch.
        #[arg(long, default_value_t = 10_000)]
        nports: u32,
        /// Most ports per host; a switch with a larger share gets several hosts.
        #[arg(long, default_value_t = 42)]
        ports_per_node: u32,
        /// N_Ports per zone (ports spread over the fabric, as zoned SANs are); 0: no
        /// zoning, every port sees every other.
        #[arg(long, default_value_t = 10)]
        zone_size: u32,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Seed of the simulation.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Simulation speed: simulated 4 KiB random I/Os per wall second (host → switch →
    /// array in the deterministic simulation, per op and QD and with several workloads
    /// at once), and property-style cases (the schedule of tests/properties.rs) per
    /// minute.
    Sim {
        /// I/Os per workload.
        #[arg(long, default_value_t = 20_000)]
        count: u64,
        /// Queue depths to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        qd: Vec<u32>,
        /// Ops of the single-workload points.
        #[arg(long, value_delimiter = ',', default_value = "read,write")]
        ops: Vec<String>,
        /// Blocks of 4 KiB per array LU (sparse memory: a random write to a 64 KiB
        /// chunk not yet written allocates it).
        #[arg(long, default_value_t = 16_384)]
        lu_blocks: u64,
        /// Leave out the point with several workloads at once.
        #[arg(long)]
        no_mixed: bool,
        /// Property-style cases to run (0: none).
        #[arg(long, default_value_t = 20)]
        cases: u32,
        /// Root seed of the scenarios and the case schedules.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Copy services in simulation: host write latency with sync against async remote
    /// copy at several distances (IOPS, p50/p99, the async journal's RPO at a disaster),
    /// and backup time per strategy (R, W, M, H, combined) under a write storm.
    Copy {
        /// ISL lengths of the remote-copy table, km.
        #[arg(long, value_delimiter = ',', default_value = "0,100,1000")]
        km: Vec<f64>,
        /// Blocks (512 bytes) of each LU of the local pair of the backup table.
        #[arg(long, default_value_t = 2048)]
        blocks: u64,
        /// The local pair's background copier during the backup, blocks per ms.
        #[arg(long, default_value_t = 8)]
        copy_rate: u64,
        /// Blocks backed up to tape, from LBA 0 of the secondary.
        #[arg(long, default_value_t = 1024)]
        range: u64,
        /// Seed of every scenario.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Recovery in simulation: blocks copied and fabric time of a differential resync
    /// (after a split, and for sync after an ISL cut) against the full formation copy,
    /// per pair mode (local, sync, async) and changed fraction.
    Recovery {
        /// Blocks (512 bytes) of each LU.
        #[arg(long, default_value_t = 16_384)]
        blocks: u64,
        /// Changed fractions, % of the volume (distinct blocks, 4 KiB writes).
        #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
        changed: Vec<f64>,
        /// ISL length of the remote pairs, km.
        #[arg(long, default_value_t = 100.0)]
        km: f64,
        /// The pairs' background copier, blocks per ms (the engine's default: 1024).
        #[arg(long, default_value_t = 1024)]
        copy_rate: u64,
        /// Seed of every scenario.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FCSIM_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(s) => eprintln!("error: {:?}: {}", s.code(), s.message()),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::from(2)
        }
    }
}

fn load(file: &std::path::Path) -> anyhow::Result<fcsim_scenarios::Scenario> {
    fcsim_scenarios::check_file(file).map_err(|d| anyhow::anyhow!("{d}"))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Run {
            file,
            seed,
            report,
            processes,
            live,
            data_dir,
            pcap,
            capture,
        } => {
            let mode = if processes {
                fcsim_scenarios::Mode::Processes {
                    exe: std::env::current_exe()?,
                }
            } else if live {
                fcsim_scenarios::Mode::Live
            } else {
                fcsim_scenarios::Mode::Sim
            };
            let scenario = load(&file)?;
            let capture = match pcap {
                Some(path) => Some(fcsim_scenarios::CaptureOptions {
                    path,
                    ports: capture
                        .iter()
                        .map(|p| fcsim_scenarios::capture::parse_port(p))
                        .collect::<Result<_, _>>()?,
                }),
                None => None,
            };
            let opts = fcsim_scenarios::RunOptions {
                seed,
                mode,
                echo: true,
                data_dir,
                capture,
            };
            let outcome = fcsim_scenarios::run_scenario(&scenario, &opts)?;
            print!("{}", outcome.summary_table());
            if let Some(path) = report {
                std::fs::write(&path, serde_json::to_string_pretty(&outcome)? + "\n")?;
                println!("report written to {}", path.display());
            }
            Ok(if outcome.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Check { files } => {
            let mut failed = false;
            for f in files {
                match fcsim_scenarios::check_file(&f) {
                    Ok(s) => println!("{}: ok ({} steps)", f.display(), s.steps.len()),
                    Err(d) => {
                        failed = true;
                        println!("{d}");
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Up {
            file,
            control,
            processes,
            data_dir,
        } => {
            let scenario = load(&file)?;
            let mode = if processes {
                fcsim_scenarios::Mode::Processes {
                    exe: std::env::current_exe()?,
                }
            } else {
                fcsim_scenarios::Mode::Live
            };
            fcsim_scenarios::serve_fabric(&scenario, &mode, &control, data_dir.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Node { spec } => {
            let text = std::fs::read_to_string(&spec)?;
            let spec: fcsim_scenarios::NodeSpec = serde_json::from_str(&text)?;
            fcsim_scenarios::run_node_process(spec)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench {
            what:
                BenchCmd::Io {
                    count,
                    qd,
                    virtual_lu,
                    tgt,
                    json,
                },
        } => {
            if virtual_lu || tgt {
                bench_io::io_virtual(count, &qd, tgt, json.as_deref())?;
            } else {
                bench_io::io(count, &qd, json.as_deref())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench {
            what: BenchCmd::Offload { gib, json, seed },
        } => {
            let r = bench_offload::offload(&bench_offload::OffloadBench { gib, seed })?;
            bench_output(&r.table(), &r, json.as_deref())
        }
        Cmd::Ctl { control, view } => client::ctl(&control, view),
        Cmd::Host { control, host, cmd } => host_cli::host(&control, &host, cmd),
        Cmd::Fault { control, fault } => client::fault(&control, fault),
        Cmd::Copy { control, cmd } => copy_cli::copy(&control, cmd),
        Cmd::Bench {
            what:
                BenchCmd::Fabric {
                    switches,
                    nports,
                    ports_per_node,
                    zone_size,
                    json,
                    seed,
                },
        } => {
            let b = bench::FabricBench {
                switches,
                nports,
                ports_per_node,
                zone_size,
                json,
                seed,
            };
            let r = bench::fabric(&b)?;
            bench_output(&r.table(), &r, b.json.as_deref())
        }
        Cmd::Bench {
            what:
                BenchCmd::Sim {
                    count,
                    qd,
                    ops,
                    lu_blocks,
                    no_mixed,
                    cases,
                    seed,
                    json,
                },
        } => {
            if let Some(op) = ops
                .iter()
                .find(|o| !["read", "write"].contains(&o.as_str()))
            {
                return Err(anyhow::anyhow!("--ops: `{op}` is not read or write"));
            }
            let r = bench_sim::sim(&bench_sim::SimBench {
                count,
                qds: qd,
                ops,
                lu_blocks,
                mixed: !no_mixed,
                cases,
                seed,
            })?;
            bench_output(&r.table(), &r, json.as_deref())
        }
        Cmd::Bench {
            what:
                BenchCmd::Copy {
                    km,
                    blocks,
                    copy_rate,
                    range,
                    seed,
                    json,
                },
        } => {
            let r = bench_copy::copy(&bench_copy::CopyBench {
                kms: km,
                blocks,
                copy_rate,
                range,
                seed,
            })?;
            bench_output(&r.table(), &r, json.as_deref())
        }
        Cmd::Bench {
            what:
                BenchCmd::Recovery {
                    blocks,
                    changed,
                    km,
                    copy_rate,
                    seed,
                    json,
                },
        } => {
            let r = bench_recovery::recovery(&bench_recovery::RecoveryBench {
                blocks,
                changed,
                km,
                copy_rate,
                seed,
            })?;
            bench_output(&r.table(), &r, json.as_deref())
        }
        Cmd::Topo { file } => {
            let scenario = load(&file)?;
            print!("{}", fcsim_scenarios::topology_summary(&scenario));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints a bench's table and writes its JSON to `json` if asked.
fn bench_output(
    table: &str,
    r: &impl serde::Serialize,
    json: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    print!("{table}");
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(r)? + "\n")?;
        println!("results written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
