//! What the controller tests share (cluster/tests/controller.rs on one etcd member, three_members.rs on three):
//! small pools and rounds of two controllers racing to allocate a fleet.

use ironlb_cluster::controller::{allocate_round, Pools};
use ironlb_cluster::testing::{assert_allocated_once, fleet};
use ironlb_cluster::{Client, EtcdConfig, EtcdSettings};

/// Pools small enough that racing controllers reach for the same values: 62 IPv4 and 63 IPv6 addresses.
pub fn pools() -> Pools {
    Pools {
        public: vec![
            "203.0.113.0/26".parse().unwrap(),
            "2001:db8:ff::/122".parse().unwrap(),
        ],
        lb_id_cap: 4096,
    }
}

/// How many rounds of one racer may fail (each is planned again) before the test gives up.
const MAX_FAILED_ROUNDS: usize = 10;

/// Lost races and failed rounds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Transactions that lost a race (planned again in the next round).
    pub conflicts: usize,
    /// Rounds that failed with an error and were planned again, as `ironlb controller` does.
    pub failed_rounds: usize,
}

/// One controller allocating until it sees nothing left to do (bounded: each round that succeeds allocates or loses a
/// race). A round that fails is planned again, as `ironlb controller`'s next round would, at most
/// [`MAX_FAILED_ROUNDS`] times.
fn allocate_until_done(cfg: &EtcdConfig, lbs: usize) -> Tally {
    let c = Client::connect(cfg).unwrap();
    let mut t = Tally::default();
    let mut rounds = 0;
    while rounds < 2 * lbs + 2 {
        let r = match c.block_on(allocate_round(c.store(), &pools(), None)) {
            Ok(r) => r,
            Err(e) => {
                t.failed_rounds += 1;
                assert!(
                    t.failed_rounds <= MAX_FAILED_ROUNDS,
                    "{} rounds failed, the last: {e}",
                    t.failed_rounds
                );
                eprintln!("a round failed and is planned again: {e}");
                continue;
            }
        };
        rounds += 1;
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        t.conflicts += r.conflicts;
        if r.allocated.is_empty() && r.conflicts == 0 {
            return t;
        }
    }
    panic!("did not settle");
}

/// `rounds` rounds of two controllers allocating `lbs` dual-stack LoadBalancers concurrently, each round under a
/// prefix of its own (`settings(prefix)` reaches it); `during(round, cfg)` runs on the test thread while they
/// race. After each round every LB has a record and no lb_id or IP is handed out twice.
pub fn race(
    settings: impl Fn(&str) -> EtcdSettings,
    rounds: usize,
    lbs: usize,
    mut during: impl FnMut(usize, &EtcdConfig),
) -> Tally {
    let mut total = Tally::default();
    for round in 0..rounds {
        let cfg = settings(&format!("/race-{round}/")).resolve().unwrap();
        Client::connect(&cfg).unwrap().apply(fleet(0..lbs)).unwrap();
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let cfg = cfg.clone();
                std::thread::spawn(move || allocate_until_done(&cfg, lbs))
            })
            .collect();
        during(round, &cfg);
        for t in racers {
            let t = t
                .join()
                .unwrap_or_else(|_| panic!("round {round}: a racer failed"));
            total.conflicts += t.conflicts;
            total.failed_rounds += t.failed_rounds;
        }
        let listing = Client::connect(&cfg).unwrap().list().unwrap();
        assert_allocated_once(&listing, lbs, &format!("round {round}"));
    }
    total
}
