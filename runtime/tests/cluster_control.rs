//! The agent's control socket (docs/cluster.md "Agents"): `ironlb status`, `dump`, `stats` and `trace` against a
//! running agent, as against `ironlb run`; the etcd outage in `ironlb status`, from the socket and from status.json
//! once the agent is gone; a second agent on the same socket refused. Each command is the `ironlb` binary, as an
//! operator runs it. Skipped without etcd, except under CI=true.

#[path = "common/cluster.rs"]
mod cluster;

use cluster::{agent_config, allocate_examples, converge, ready};
use ironlb_cluster::testing::{examples, EtcdServer};
use ironlb_runtime::cluster::agent::{Agent, AgentError, ControlSocket};
use ironlb_runtime::daemon::DaemonError;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `ironlb ARGS --state-dir DIR`: exit code, stdout, stderr.
fn ironlb(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .args(args)
        .arg("--state-dir")
        .arg(dir)
        .env_remove("IRONLB_CONFIG")
        .output()
        .expect("run ironlb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = ironlb(dir, args);
    assert_eq!(code, 0, "ironlb {args:?}: {out}{err}");
    out
}

/// An agent of `etcd` with its state and control socket in `dir`.
fn agent_in(etcd: ironlb_cluster::EtcdConfig, dir: &Path) -> Result<Agent, AgentError> {
    let mut cfg = agent_config(etcd, Some(dir.to_path_buf()));
    cfg.control = Some(ControlSocket {
        path: dir.join("ironlb.sock"),
        group: None,
    });
    Agent::start(cfg)
}

#[test]
fn a_running_agent_answers_status_dump_stats_and_trace_and_shows_the_outage() {
    let Some(mut etcd) = EtcdServer::start_or_skip("a_running_agent_answers_status_dump_stats_and_trace")
    else {
        return;
    };
    let writer = etcd.client("/ironlb/");
    writer.apply(examples()).unwrap();
    allocate_examples(&writer);
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    let mut agent = agent_in(etcd.settings("/ironlb/").resolve().unwrap(), dir).unwrap();
    assert_eq!(agent.socket_path(), Some(dir.join("ironlb.sock").as_path()));
    assert!(agent.wait_listed(Duration::from_secs(20)), "no listing from etcd");
    converge(&mut agent, "both ready", |a| ready(a) == 2);

    // status: both load balancers, no source line while etcd answers.
    let status = ok(dir, &["status"]);
    assert!(
        status.contains("default/my-load-balancer  lb_id 7  Ready"),
        "{status}"
    );
    assert!(
        status.contains("default/my-loadbalancer  lb_id 9  Ready"),
        "{status}"
    );
    assert!(!status.contains("source:"), "{status}");

    // dump: the device's tables, named by the agent's objects; equal to what the agent itself reads.
    let dump = ok(dir, &["dump", "-o", "json"]);
    let named: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert!(dump.contains("default/my-load-balancer"), "{dump}");
    let unnamed: serde_json::Value = serde_json::from_str(&agent.dump_json().unwrap()).unwrap();
    assert_eq!(named["lbs"].as_object().map(|m| m.len()), Some(2), "{dump}");
    assert_eq!(named["vips"], unnamed["vips"], "{dump}");
    assert_eq!(named["targets"], unnamed["targets"], "{dump}");

    // trace and stats: a packet to the public VIP is forwarded to a target; traces are not counted.
    let trace = ok(
        dir,
        &[
            "trace",
            "--ingress",
            "public",
            "--packet",
            "tcp 198.51.100.7:1234 -> 203.0.113.10:80",
        ],
    );
    assert!(
        trace.contains("load balancer default/my-load-balancer"),
        "{trace}"
    );
    assert!(trace.contains("hit lb_id=7"), "{trace}");
    assert!(trace.contains("verdict: forward"), "{trace}");
    let stats = ok(dir, &["stats", "-o", "json"]);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert!(stats.is_object(), "{stats}");

    // A second agent given the same socket is refused, and the first keeps answering.
    let second = tempfile::tempdir().unwrap();
    let mut cfg = agent_config(
        etcd.settings("/ironlb/").resolve().unwrap(),
        Some(second.path().into()),
    );
    cfg.control = Some(ControlSocket {
        path: dir.join("ironlb.sock"),
        group: None,
    });
    match Agent::start(cfg) {
        Err(AgentError::Control(DaemonError::SocketInUse { path })) => {
            assert_eq!(path, dir.join("ironlb.sock"))
        }
        other => panic!("a second agent on a live socket: {other:?}"),
    }
    ok(dir, &["status"]);

    // etcd goes away: status says so above the load balancers, which stay ready; the device still answers.
    etcd.kill();
    converge(&mut agent, "outage seen", |a| !a.health().connected);
    let status = ok(dir, &["status"]);
    assert!(
        status.contains("source: etcd:") && status.contains("unreachable since"),
        "{status}"
    );
    assert!(
        status.contains("the device keeps its last good state"),
        "{status}"
    );
    assert!(
        status.contains("default/my-load-balancer  lb_id 7  Ready"),
        "{status}"
    );
    assert!(ok(dir, &["dump", "-o", "json"]).contains("203.0.113.10"));

    // The agent stops: its socket goes, and `status` reads what it last wrote to status.json, outage included.
    drop(agent);
    assert!(!dir.join("ironlb.sock").exists());
    let status = ok(dir, &["status"]);
    assert!(status.contains("unreachable since"), "{status}");
    assert!(
        status.contains("default/my-loadbalancer  lb_id 9  Ready"),
        "{status}"
    );
    let (code, _, err) = ironlb(dir, &["dump"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`ironlb agent`"), "{err}");
}

#[test]
fn before_its_first_listing_an_agent_says_so_and_shows_the_tables_it_found() {
    // A loopback port that accepts connections and never answers: the agent never lists.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    let settings = ironlb_cluster::EtcdSettings {
        endpoints: Some(vec![endpoint.clone()]),
        ..Default::default()
    };
    let mut agent = agent_in(settings.resolve().unwrap(), dir).unwrap();
    assert!(
        agent.sync().unwrap().is_none(),
        "nothing is reconciled before a listing"
    );
    let status = ok(dir, &["status"]);
    assert!(
        status.contains("source: waiting for the first listing from etcd"),
        "{status}"
    );
    assert!(status.contains(&format!("source: etcd:{endpoint}")), "{status}");
    let dump: serde_json::Value = serde_json::from_str(&ok(dir, &["dump", "-o", "json"])).unwrap();
    assert_eq!(dump["lbs"].as_object().map(|m| m.len()), Some(0), "{dump}");
    drop(agent);
}
