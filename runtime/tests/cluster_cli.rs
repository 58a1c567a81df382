//! `ironlb apply`, `get` and `delete` against a real etcd, as a user runs them (issue 17 test 5, docs/cluster.md).
//! Skipped with a message when etcd is not installed, except under CI=true (ironlb_cluster::testing).

use ironlb_cluster::testing::EtcdServer;
use std::path::Path;
use std::process::Command;

struct Cli {
    etcd: EtcdServer,
}

impl Cli {
    fn start(test: &str) -> Option<Cli> {
        EtcdServer::start_or_skip(test).map(|etcd| Cli { etcd })
    }

    /// Runs `ironlb ARGS --etcd-endpoints E`: exit code, stdout, stderr.
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_ironlb"))
            .args(args)
            .args(["--etcd-endpoints", &self.etcd.endpoint()])
            .env_remove("IRONLB_CONFIG")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .output()
            .expect("run ironlb");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "ironlb {args:?}: {out}{err}");
        out
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn apply_get_delete_like_kubectl() {
    let Some(cli) = Cli::start("apply_get_delete_like_kubectl") else {
        return;
    };
    let out = cli.ok(&["apply", "-f", "examples"]);
    assert!(
        out.contains("LoadBalancer default/my-load-balancer created"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 12, "{out}");
    let table = cli.ok(&["get", "lb"]);
    assert!(table.starts_with("NAME "), "{table}");
    assert!(
        table.contains("my-load-balancer") && table.contains("203.0.113.10"),
        "{table}"
    );
    // `get -o yaml` is a List that applies back unchanged (resourceVersions pinned and current).
    let dir = tempfile::tempdir().unwrap();
    let all = cli.ok(&["get", "LoadBalancers", "-A", "-o", "yaml"]);
    assert!(
        all.contains("kind: List") && all.contains("resourceVersion:"),
        "{all}"
    );
    let f = write(dir.path(), "all.yaml", &all);
    let out = cli.ok(&["apply", "-f", &f]);
    assert!(out.lines().all(|l| l.ends_with(" unchanged")), "{out}");
    // One object by name as JSON.
    let json: serde_json::Value =
        serde_json::from_str(&cli.ok(&["get", "network", "my-network", "-o", "json"])).unwrap();
    assert_eq!(json["kind"], "Network");
    assert_eq!(json["spec"]["vni"], 100);
    // A Network still referenced cannot be deleted alone (exit 2); with everything else it can.
    let (code, _, err) = cli.run(&["delete", "network", "my-network"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("deleting would leave") && err.contains("my-network"),
        "{err}"
    );
    let (code, _, err) = cli.run(&["get", "lb", "nope"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not found: LoadBalancer default/nope"), "{err}");
    let out = cli.ok(&["delete", "-f", "examples"]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" deleted")).count(),
        12,
        "{out}"
    );
    assert_eq!(cli.ok(&["get", "lb", "-A"]).lines().count(), 1, "only the header");
}

#[test]
fn bad_objects_are_refused_with_validate_s_errors_and_nothing_changes() {
    let Some(cli) = Cli::start("bad_objects_are_refused_with_validate_s_errors_and_nothing_changes") else {
        return;
    };
    cli.ok(&["apply", "-f", "examples"]);
    let before = cli.ok(&["get", "lb", "-A", "-o", "json"]);
    let dir = tempfile::tempdir().unwrap();
    // A valid Network with a broken LoadBalancer and a document that does not load.
    let bad = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata: {name: fresh}\nspec: {vni: 4242}\n---\napiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancer\nmetadata: {name: x}\nspec:\n  type: Public\n  ipFamilies: [IPv4]\n  ports: [{protocol: tcp, port: 80, portEnd: 79}]\n  networkRef: {name: nope}\n",
    );
    let (code, out, err) = cli.run(&["apply", "-f", &bad]);
    assert_eq!(code, 2, "{out}{err}");
    // The same lines `ironlb validate` prints for the file.
    let validate = Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .args(["validate", &bad])
        .output()
        .unwrap();
    let vout = String::from_utf8_lossy(&validate.stdout);
    for needle in [
        "LoadBalancer default/x: spec.ports[0].portEnd",
        "spec.networkRef.name: unknown Network default/nope",
    ] {
        assert!(vout.contains(needle), "validate: {vout}");
        assert!(err.contains(needle), "apply: {err}");
    }
    assert!(err.contains("nothing written"), "{err}");
    let broken = write(dir.path(), "broken.yaml", "apiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata: {name: n2}\nspec: {vni: 5, bogus: 1}\n");
    let (code, _, err) = cli.run(&["apply", "-f", &broken, "-f", &bad]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("spec.bogus") && err.contains("unknown field"),
        "{err}"
    );
    // Nothing changed: the same objects at the same resourceVersions, and no new Network.
    assert_eq!(cli.ok(&["get", "lb", "-A", "-o", "json"]), before);
    let (code, _, _) = cli.run(&["get", "network", "fresh"]);
    assert_eq!(code, 1);
}

#[test]
fn a_stale_resource_version_is_a_conflict_and_the_config_file_is_read() {
    let Some(cli) = Cli::start("a_stale_resource_version_is_a_conflict_and_the_config_file_is_read") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The [etcd] table of a config file: endpoints and prefix (the flag's endpoint is the same server).
    let cfg = write(
        dir.path(),
        "ironlb.toml",
        &format!(
            "[etcd]\nendpoints = [\"{}\"]\nprefix = \"/fleet-a/\"\n",
            cli.etcd.endpoint()
        ),
    );
    cli.ok(&["apply", "-f", "examples", "--config", &cfg]);
    assert_eq!(
        cli.ok(&["get", "lb"]).lines().count(),
        1,
        "the default prefix is another fleet"
    );
    let lbs = cli.ok(&["get", "lb", "--etcd-prefix", "/fleet-a/"]);
    assert_eq!(lbs.lines().count(), 3, "{lbs}");
    // Read a Network, let someone else change it, then apply the stale copy: a conflict, exit 1.
    let old = cli.ok(&["get", "network", "my-network", "-o", "yaml", "--config", &cfg]);
    let stale = write(dir.path(), "stale.yaml", &old);
    let edited = write(
        dir.path(),
        "edited.yaml",
        &old.replace(
            "  name: my-network\n",
            "  name: my-network\n  labels: {edited: 'yes'}\n",
        )
        .lines()
        .filter(|l| !l.contains("resourceVersion"))
        .map(|l| format!("{l}\n"))
        .collect::<String>(),
    );
    let out = cli.ok(&["apply", "-f", &edited, "--config", &cfg]);
    assert!(out.contains("Network default/my-network configured"), "{out}");
    let (code, out, err) = cli.run(&["apply", "-f", &stale, "--config", &cfg]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("conflict") && err.contains("Network default/my-network"),
        "{err}"
    );
    let now = cli.ok(&["get", "network", "my-network", "-o", "yaml", "--config", &cfg]);
    assert!(now.contains("edited"), "the newer write stands: {now}");
    // A bad [etcd] table is bad input naming the key.
    let bad = write(dir.path(), "bad.toml", "[etcd]\nprefix = \"nope\"\n");
    let (code, _, err) = cli.run(&["get", "lb", "--config", &bad]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("prefix"), "{err}");
}
