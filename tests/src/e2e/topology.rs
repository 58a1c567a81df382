//! The e2e topology (docs/testing.md "End to end" has the picture): namespaces, TUN ports, the model, the fabric,
//! the daemon, target servers. Built by [`Topology::start`], torn down by `Drop`.

use super::{eventually, kill_netns_processes, run_bounded, run_ok, run_quiet, script, Proc, PREFIX, PYTHON};
use serde_json::Value;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Public client addresses.
pub const PUB_CLIENT4: &str = "198.51.100.7";
/// Public client IPv6 address.
pub const PUB_CLIENT6: &str = "2001:db8:c::7";
/// A router on the public side that sends ICMP errors.
pub const ROUTER4: &str = "192.0.2.1";
/// IPv6 router on the public side.
pub const ROUTER6: &str = "2001:db8:e::1";
/// Client VM in Network A (VNI 100).
pub const CLIENT_A: &str = "10.0.0.5";
/// Client VM in Network B (VNI 200).
pub const CLIENT_B: &str = "10.200.0.5";
/// The internal load balancer's VIP (Network A).
pub const INTERNAL_VIP: &str = "10.0.0.1";
/// Underlay source of encapsulated packets (the runtime's default `--underlay-src`).
pub const UNDERLAY_SRC: &str = "fd00:ffff::1";
/// Public pool given to the daemon.
pub const PUBLIC_POOL: &str = "203.0.113.0/24,2001:db8:ff::/64";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// What to build.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Target VMs `t1..=tN` (N ≥ 1); all exist (namespace, fabric TUN, servers).
    pub targets: usize,
    /// How many of them (`t1..=tK`) are selected by the load balancers at start (label `app: web`).
    pub selected: usize,
    /// Allow-list of the public load balancer: (protocol, port, portEnd).
    pub public_ports: Vec<(&'static str, u16, Option<u16>)>,
    /// `ironlb run --drain-timeout` (the daemon's default when `None`).
    pub drain_timeout: Option<&'static str>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            targets: 3,
            selected: 3,
            public_ports: vec![("tcp", 80, None), ("udp", 1024, Some(2048)), ("sctp", 9000, None)],
            drain_timeout: None,
        }
    }
}

/// A target VM.
#[derive(Debug, Clone)]
pub struct Target {
    /// `t1`, `t2`, ...
    pub name: String,
    /// Its namespace.
    pub ns: String,
    /// Its interface (the fabric's TUN).
    pub ifname: String,
    /// Its underlay address `fd00:1::N`.
    pub underlay: String,
    /// Its address in Network A, `10.0.0.(10+N)`.
    pub addr: String,
}

/// The running topology. Dropping it kills every process and deletes every namespace it created.
pub struct Topology {
    /// Short id (`PID-N`) in every name.
    pub id: String,
    /// The fabric namespace: the model, the fabric, the daemon; the device's underlay TUN.
    pub fabric_ns: String,
    /// The public client.
    pub pub_ns: String,
    /// The client VM in Network A.
    pub a_ns: String,
    /// The client VM in Network B.
    pub b_ns: String,
    /// Target VMs.
    pub targets: Vec<Target>,
    /// The public load balancer's VIPs (from `ironlb status`).
    pub vip4: String,
    /// Public IPv6 VIP.
    pub vip6: String,
    /// Manifest directory the daemon watches.
    pub manifests: PathBuf,
    /// Daemon state directory.
    pub state: PathBuf,
    /// Logs of every process.
    pub logs: PathBuf,
    shm: String,
    ironlb: PathBuf,
    spec: Spec,
    daemon: Option<Proc>,
    servers: Vec<Proc>,
    fabric: Option<Proc>,
    model: Option<Proc>,
    namespaces: Vec<String>,
    _dir: tempfile::TempDir,
}

fn ip(ns: &str, args: &[&str]) {
    let mut argv = vec!["ip", "-n", ns];
    argv.extend_from_slice(args);
    run_ok(None, &argv);
}

fn no_rp_filter(ns: &str) {
    // Replies come back on another interface (the fabric's return TUN) than the route to their source (the VIP,
    // through the device's port): strict reverse-path filtering would drop them.
    run_ok(
        Some(ns),
        &[
            "sh",
            "-c",
            "for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done",
        ],
    );
}

/// Move `ifname` from `from` into `to`, without IPv6 link-local autoconfiguration (no router solicitations or
/// listener reports reach the device), and bring it up.
fn move_up(from: &str, ifname: &str, to: &str) {
    ip(from, &["link", "set", ifname, "netns", to]);
    ip(to, &["link", "set", ifname, "addrgenmode", "none"]);
    ip(to, &["link", "set", ifname, "mtu", "9000", "up"]);
}

impl Topology {
    /// Build everything. `fabric_bin` is the path of `ironlb-fabric` (`env!("CARGO_BIN_EXE_ironlb-fabric")`).
    pub fn start(spec: Spec, fabric_bin: &Path) -> Topology {
        super::cleanup_stale();
        let ironlb = super::workspace_bin("ironlb");
        let sim = super::workspace_bin("ironlb-sim");
        let id = format!("{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let dir = tempfile::tempdir().expect("temp dir");
        let (manifests, state, logs) = (
            dir.path().join("manifests"),
            dir.path().join("state"),
            dir.path().join("logs"),
        );
        for d in [&manifests, &state, &logs] {
            std::fs::create_dir_all(d).expect("create dir");
        }
        let nsname = |role: &str| format!("{PREFIX}-{id}-{role}");
        let targets: Vec<Target> = (1..=spec.targets)
            .map(|i| Target {
                name: format!("t{i}"),
                ns: nsname(&format!("t{i}")),
                ifname: format!("t{i}"),
                underlay: format!("fd00:1::{i}"),
                addr: format!("10.0.0.{}", 10 + i),
            })
            .collect();
        let mut t = Topology {
            fabric_ns: nsname("fab"),
            pub_ns: nsname("pub"),
            a_ns: nsname("a"),
            b_ns: nsname("b"),
            targets,
            vip4: String::new(),
            vip6: String::new(),
            manifests,
            state,
            logs,
            shm: format!("/dev/shm/{PREFIX}-{id}"),
            ironlb,
            spec,
            daemon: None,
            servers: Vec::new(),
            fabric: None,
            model: None,
            namespaces: Vec::new(),
            id,
            _dir: dir,
        };
        let all: Vec<String> = [&t.fabric_ns, &t.pub_ns, &t.a_ns, &t.b_ns]
            .into_iter()
            .cloned()
            .chain(t.targets.iter().map(|x| x.ns.clone()))
            .collect();
        for ns in &all {
            run_ok(None, &["ip", "netns", "add", ns]);
            t.namespaces.push(ns.clone());
            ip(ns, &["link", "set", "lo", "up"]);
            // Ports the kernel picks for clients stay above every port the tests pin (curl --local-port 41000,
            // 41001, 42000.., 45000): otherwise an earlier connection can get a pinned port by chance, and its
            // TIME_WAIT fails the pinned bind ("Address already in use", seen in e2e runs). The range is per
            // namespace and Linux uses it for IPv6 too.
            run_ok(
                Some(ns),
                &["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=50000 60999"],
            );
        }
        t.write_base_manifests();

        // The model, with its four ports as TUNs in the fabric namespace (moved to their namespaces below).
        let (bar, host) = (format!("{}.bar", t.shm), format!("{}.host", t.shm));
        let sim_s = sim.to_string_lossy().into_owned();
        let model = Proc::spawn(
            "ironlb-sim",
            Some(&t.fabric_ns),
            &[
                &sim_s,
                "serve",
                "--bar",
                &bar,
                "--host-mem",
                &host,
                "--tun",
                "0=m0",
                "--tun",
                "1=m1",
                "--tun",
                "2=m2",
                "--tun",
                "3=m3",
            ],
            &t.logs,
            false,
        );
        t.model = Some(model);
        let fab = t.fabric_ns.clone();
        eventually("the model's TUN ports", Duration::from_secs(15), || {
            t.model.as_mut().expect("started").assert_running();
            let links = run_quiet(None, &["ip", "-n", &fab, "-o", "link"]);
            ["m0:", "m1:", "m2:", "m3:"]
                .iter()
                .all(|m| links.contains(m))
                .then_some(())
        });

        // The fabric: one TUN per target, one return TUN per client namespace.
        let fabric_s = fabric_bin.to_string_lossy().into_owned();
        let mut argv: Vec<String> = vec![fabric_s, "--underlay-src".into(), UNDERLAY_SRC.into()];
        for x in &t.targets {
            argv.extend([
                "--target".into(),
                format!("{}={}={}", x.name, x.underlay, x.ifname),
            ]);
        }
        argv.extend([
            "--client".into(),
            format!("rpub={PUB_CLIENT4},{PUB_CLIENT6}"),
            "--client".into(),
            format!("ra={CLIENT_A}"),
            "--client".into(),
            format!("rb={CLIENT_B}"),
        ]);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut fabric = Proc::spawn("ironlb-fabric", Some(&t.fabric_ns), &argv, &t.logs, true);
        fabric.expect_line("ready", Duration::from_secs(15));
        t.fabric = Some(fabric);

        // Wiring.
        ip(&fab, &["link", "set", "m3", "addrgenmode", "none"]);
        ip(&fab, &["link", "set", "m3", "mtu", "9000", "up"]);
        let clients = [
            // The public namespace also holds the routers that send ICMP errors (IPv6 raw sockets need a local
            // source address).
            (
                &t.pub_ns,
                "m0",
                "rpub",
                vec![PUB_CLIENT4, PUB_CLIENT6, ROUTER4, ROUTER6],
            ),
            (&t.a_ns, "m1", "ra", vec![CLIENT_A]),
            (&t.b_ns, "m2", "rb", vec![CLIENT_B]),
        ];
        for (ns, port, ret, addrs) in &clients {
            move_up(&fab, port, ns);
            move_up(&fab, ret, ns);
            for a in addrs {
                let plen = if a.contains(':') { "/128" } else { "/32" };
                ip(ns, &["addr", "add", &format!("{a}{plen}"), "dev", "lo", "nodad"]);
            }
            no_rp_filter(ns);
        }
        // Routes into the device's ports: the public VIPs (and, to show it is unreachable, Network A) from the
        // public client; Network A from its client VM; the internal VIP from Network B.
        ip(
            &t.pub_ns,
            &["route", "add", "203.0.113.0/24", "dev", "m0", "src", PUB_CLIENT4],
        );
        ip(
            &t.pub_ns,
            &["route", "add", "10.0.0.0/24", "dev", "m0", "src", PUB_CLIENT4],
        );
        ip(
            &t.pub_ns,
            &[
                "-6",
                "route",
                "add",
                "2001:db8:ff::/64",
                "dev",
                "m0",
                "src",
                PUB_CLIENT6,
            ],
        );
        ip(
            &t.a_ns,
            &["route", "add", "10.0.0.0/24", "dev", "m1", "src", CLIENT_A],
        );
        ip(
            &t.b_ns,
            &["route", "add", "10.0.0.0/24", "dev", "m2", "src", CLIENT_B],
        );
        for x in &t.targets {
            move_up(&fab, &x.ifname, &x.ns);
            ip(
                &x.ns,
                &["addr", "add", &format!("{}/32", x.addr), "dev", &x.ifname],
            );
            ip(&x.ns, &["route", "add", "default", "dev", &x.ifname]);
            ip(&x.ns, &["-6", "route", "add", "default", "dev", &x.ifname]);
            no_rp_filter(&x.ns);
        }

        // The daemon, then the VIPs it allocated, configured on every target (direct server return).
        t.start_daemon();
        let status = t.wait_ready(&["default/web", "default/internal"]);
        let ips = lb_ips(&status, "default/web");
        t.vip4 = ips.iter().find(|a| a.is_ipv4()).expect("an IPv4 VIP").to_string();
        t.vip6 = ips.iter().find(|a| a.is_ipv6()).expect("an IPv6 VIP").to_string();
        for x in t.targets.clone() {
            for vip in [
                format!("{}/32", t.vip4),
                format!("{}/128", t.vip6),
                format!("{INTERNAL_VIP}/32"),
            ] {
                ip(&x.ns, &["addr", "add", &vip, "dev", "lo", "nodad"]);
            }
            let server = script("target.py").to_string_lossy().into_owned();
            let udp: Vec<String> = [1500u16, 1700, 2049]
                .iter()
                .flat_map(|p| [format!("{}:{p}", t.vip4), format!("[{}]:{p}", t.vip6)])
                .collect();
            let mut argv = vec![
                PYTHON, &server, "--name", &x.name, "--tcp", "80", "--tcp", "81", "--tcp", "8080",
            ];
            for u in &udp {
                argv.extend(["--udp", u]);
            }
            let mut p = Proc::spawn(&format!("server-{}", x.name), Some(&x.ns), &argv, &t.logs, true);
            p.expect_line("ready", Duration::from_secs(15));
            t.servers.push(p);
        }
        t
    }

    fn write_base_manifests(&self) {
        let net = "apiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata:\n  name: net-a\nspec:\n  vni: 100\n---\napiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata:\n  name: net-b\nspec:\n  vni: 200\n";
        self.write_manifest("networks.yaml", net);
        for (i, x) in self.targets.iter().enumerate() {
            if i < self.spec.selected {
                self.add_target(&x.name);
            }
        }
        self.set_public_ports(&self.spec.public_ports.clone());
        let internal = format!(
            "apiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancer\nmetadata:\n  name: internal\n  uid: 00000000-0000-4000-8000-0000000000b2\nspec:\n  type: Internal\n  networkRef:\n    name: net-a\n  ipFamilies: [IPv4]\n  ips:\n    - ip: {INTERNAL_VIP}\n  networkInterfaceSelector:\n    matchLabels:\n      app: web\n  ports:\n    - protocol: TCP\n      port: 8080\n"
        );
        self.write_manifest("lb-internal.yaml", &internal);
    }

    /// Write (atomically: temp file + rename) a manifest file the daemon watches.
    pub fn write_manifest(&self, file: &str, text: &str) {
        let tmp = self.manifests.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).expect("write manifest");
        std::fs::rename(&tmp, self.manifests.join(file)).expect("rename manifest");
    }

    /// Select target `name` (write its NetworkInterface, labelled `app: web`).
    pub fn add_target(&self, name: &str) {
        self.set_target_state(name, "Available");
    }

    /// Write target `name`'s NetworkInterface (labelled `app: web`) with `status.state: STATE`.
    pub fn set_target_state(&self, name: &str, state: &str) {
        let x = self
            .targets
            .iter()
            .find(|x| x.name == name)
            .expect("known target");
        let n: u32 = name[1..].parse().expect("tN");
        let nic = format!(
            "apiVersion: networking.ironcore.dev/v1alpha1\nkind: NetworkInterface\nmetadata:\n  name: {name}\n  uid: 00000000-0000-4000-8000-{n:012}\n  labels:\n    app: web\nspec:\n  networkRef:\n    name: net-a\n  ips:\n    - ip: {addr}\nstatus:\n  state: {state}\n  ips:\n    - {addr}\n  underlayAddress: \"{u}\"\n",
            addr = x.addr,
            u = x.underlay
        );
        self.write_manifest(&format!("nic-{name}.yaml"), &nic);
    }

    /// Deselect target `name` (delete its NetworkInterface).
    pub fn remove_target(&self, name: &str) {
        std::fs::remove_file(self.manifests.join(format!("nic-{name}.yaml"))).expect("remove manifest");
    }

    /// Rewrite the public load balancer with this allow-list.
    pub fn set_public_ports(&self, ports: &[(&str, u16, Option<u16>)]) {
        let mut list = String::new();
        for (proto, port, end) in ports {
            list.push_str(&format!("    - protocol: {proto}\n      port: {port}\n"));
            if let Some(end) = end {
                list.push_str(&format!("      portEnd: {end}\n"));
            }
        }
        let lb = format!(
            "apiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancer\nmetadata:\n  name: web\n  uid: 00000000-0000-4000-8000-0000000000b1\nspec:\n  type: Public\n  ipFamilies: [IPv4, IPv6]\n  networkRef:\n    name: net-a\n  networkInterfaceSelector:\n    matchLabels:\n      app: web\n  ports:\n{list}"
        );
        self.write_manifest("lb-public.yaml", &lb);
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.state.join("ironlb.sock")
    }

    /// Start `ironlb run` (in the fabric namespace, so a killed test run can be cleaned up).
    pub fn start_daemon(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let ironlb = self.ironlb.to_string_lossy().into_owned();
        let backend = format!("sim-shm:{}", self.shm);
        let (m, s) = (
            self.manifests.to_string_lossy().into_owned(),
            self.state.to_string_lossy().into_owned(),
        );
        let mut argv = vec![
            ironlb.as_str(),
            "run",
            "--manifests",
            &m,
            "--backend",
            &backend,
            "--state-dir",
            &s,
            "--public-pool",
            PUBLIC_POOL,
        ];
        if let Some(t) = self.spec.drain_timeout {
            argv.extend(["--drain-timeout", t]);
        }
        let d = Proc::spawn(
            "ironlb-run",
            Some(&self.fabric_ns.clone()),
            &argv,
            &self.logs,
            false,
        );
        self.daemon = Some(d);
    }

    /// SIGKILL the daemon (the device keeps its tables and keeps forwarding).
    pub fn kill_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill();
        }
    }

    /// Run `ironlb ARGS --socket SOCK -o json` and parse its output.
    pub fn ironlb_json(&self, args: &[&str]) -> Option<Value> {
        let ironlb = self.ironlb.to_string_lossy().into_owned();
        let sock = self.socket().to_string_lossy().into_owned();
        let mut argv = vec![ironlb.as_str()];
        argv.extend_from_slice(args);
        argv.extend(["--socket", &sock, "-o", "json"]);
        let o = run_bounded(None, &argv, Duration::from_secs(10));
        if !o.status.success() {
            return None;
        }
        serde_json::from_slice(&o.stdout).ok()
    }

    /// Wait until the daemon answers and the named load balancers are Ready; returns `ironlb status`.
    pub fn wait_ready(&mut self, lbs: &[&str]) -> Value {
        eventually(
            "the daemon to program the load balancers",
            Duration::from_secs(30),
            || {
                if let Some(d) = self.daemon.as_mut() {
                    d.assert_running();
                }
                let st = self.ironlb_json(&["status"])?;
                lbs.iter().all(|n| lb_ready(&st, n)).then_some(st)
            },
        )
    }

    /// `ironlb dump -o json`.
    pub fn dump(&self) -> Value {
        eventually("ironlb dump", Duration::from_secs(10), || {
            self.ironlb_json(&["dump"])
        })
    }

    /// `ironlb stats -o json`.
    pub fn stats(&self) -> Value {
        eventually("ironlb stats", Duration::from_secs(10), || {
            self.ironlb_json(&["stats"])
        })
    }

    /// Target by name.
    pub fn target(&self, name: &str) -> &Target {
        self.targets
            .iter()
            .find(|x| x.name == name)
            .expect("known target")
    }

    /// Target name of an underlay address.
    pub fn target_of_underlay(&self, underlay: &str) -> Option<String> {
        let u: IpAddr = underlay.parse().ok()?;
        self.targets
            .iter()
            .find(|x| x.underlay.parse::<IpAddr>().ok() == Some(u))
            .map(|x| x.name.clone())
    }

    /// Stop the fabric (SIGTERM) and return its final counters.
    pub fn stop_fabric(&mut self) -> super::fabric::FabricStats {
        let mut f = self.fabric.take().expect("fabric running");
        f.terminate(Duration::from_secs(5));
        let mut last = None;
        while let Some(l) = f.line(Duration::from_millis(500)) {
            last = Some(l);
        }
        let l = last.unwrap_or_else(|| panic!("fabric printed no counters; log:\n{}", f.log_text()));
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("fabric counters {l:?}: {e}"))
    }
}

/// Whether `ns/name` has condition Ready=True in `ironlb status -o json`.
pub fn lb_ready(status: &Value, name: &str) -> bool {
    lb_status(status, name).is_some_and(|lb| {
        lb["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
    })
}

fn lb_status<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    let (ns, n) = name.split_once('/')?;
    status
        .as_array()?
        .iter()
        .find(|lb| lb["namespace"] == ns && lb["name"] == n)
}

/// The IPs of `ns/name` in `ironlb status -o json`.
pub fn lb_ips(status: &Value, name: &str) -> Vec<IpAddr> {
    let lb = lb_status(status, name).unwrap_or_else(|| panic!("{name} not in status: {status}"));
    lb["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().or_else(|| v["ip"].as_str()))
        .filter_map(|s| s.parse().ok())
        .collect()
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Processes first (the TUNs disappear with the model and the fabric), then the namespaces.
        self.servers.clear();
        self.daemon = None;
        self.fabric = None;
        self.model = None;
        for ns in &self.namespaces {
            kill_netns_processes(ns);
            let _ = run_bounded(None, &["ip", "netns", "del", ns], Duration::from_secs(10));
        }
        for ext in ["bar", "host"] {
            let _ = std::fs::remove_file(format!("{}.{ext}", self.shm));
        }
        if std::thread::panicking() {
            for e in std::fs::read_dir(&self.logs).into_iter().flatten().flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(25)..].join("\n");
                eprintln!(
                    "--- e2e {} log {} (last 25 lines):\n{tail}",
                    self.id,
                    e.path().display()
                );
            }
        }
    }
}
