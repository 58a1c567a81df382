//! The controller's routings against a real etcd (issue 17: the controller "computes each LoadBalancerRouting from
//! selectors, and writes routing and status back to etcd"): written for a LoadBalancer with a selector, rewritten
//! when an interface changes, never written over a routing someone else gave, deleted with its LoadBalancer, and
//! not written at all under a lease that is gone. Skipped without etcd, except under CI=true.

use ironlb_api::load::load_str;
use ironlb_api::types::LoadBalancerRouting;
use ironlb_api::{Kind, Object, ObjectKey, ObjectRef};
use ironlb_cluster::controller::campaign;
use ironlb_cluster::routing::{controller_owned, routing_round};
use ironlb_cluster::testing::EtcdServer;
use ironlb_cluster::write::Incoming;
use ironlb_cluster::Client;
use std::time::Duration;

const OBJECTS: &str = "apiVersion: networking.ironcore.dev/v1alpha1
kind: Network
metadata: {name: n, uid: net-uid}
spec: {vni: 100}
---
apiVersion: networking.ironcore.dev/v1alpha1
kind: NetworkInterface
metadata: {name: web-1, uid: u1, labels: {app: web}}
spec: {networkRef: {name: n}, ips: [{ip: 10.0.0.11}]}
status: {state: Available, underlayAddress: 'fd00::11'}
---
apiVersion: networking.ironcore.dev/v1alpha1
kind: NetworkInterface
metadata: {name: web-2, uid: u2, labels: {app: web}}
spec: {networkRef: {name: n}, ips: [{ip: 10.0.0.12}]}
status: {state: Available, underlayAddress: 'fd00::12'}
---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {name: web}
spec:
  type: Public
  ipFamilies: [IPv4]
  networkRef: {name: n}
  networkInterfaceSelector: {matchLabels: {app: web}}
  ports: [{protocol: TCP, port: 80}]
";

fn incoming(text: &str) -> Vec<Incoming> {
    let (objects, errors) = load_str("t.yaml", text);
    assert!(errors.is_empty(), "{errors:?}");
    Incoming::unpinned(objects)
}

fn routing_ref() -> ObjectRef {
    ObjectKey::new("default", "web").of(Kind::LoadBalancerRouting)
}

/// The stored routing's destination names, and whether the controller owns it.
fn stored(c: &Client) -> Option<(Vec<String>, bool)> {
    let s = c.get(&routing_ref()).unwrap()?;
    let owned = controller_owned(&s.object);
    let Object::LoadBalancerRouting(LoadBalancerRouting { destinations, .. }) = s.object else {
        panic!("not a routing")
    };
    Some((destinations.into_iter().map(|d| d.name).collect(), owned))
}

#[test]
fn the_controller_writes_and_maintains_routings_from_selectors() {
    let Some(etcd) = EtcdServer::start_or_skip("the_controller_writes_and_maintains_routings_from_selectors")
    else {
        return;
    };
    let c = etcd.client("/r/");
    c.apply(incoming(OBJECTS)).unwrap();
    let fence = c
        .block_on(campaign(c.store(), "a", 5, Duration::from_millis(50)))
        .unwrap();
    let round = || c.block_on(routing_round(c.store(), Some(&fence))).unwrap();

    // Written, owned, both interfaces; a second round has nothing to do.
    let r = round();
    assert_eq!(r.written, vec![ObjectKey::new("default", "web")], "{r:?}");
    assert_eq!(stored(&c), Some((vec!["web-1".into(), "web-2".into()], true)));
    assert_eq!(round(), Default::default());

    // An interface leaves Available: rewritten without it.
    c.apply(incoming(&OBJECTS.replace(
        "status: {state: Available, underlayAddress: 'fd00::12'}",
        "status: {state: Pending, underlayAddress: 'fd00::12'}",
    )))
    .unwrap();
    assert_eq!(round().written.len(), 1);
    assert_eq!(stored(&c), Some((vec!["web-1".into()], true)));

    // Deleting the LoadBalancer deletes its owned routing in the same write (apply would otherwise refuse: the
    // routing names it).
    c.delete(
        vec![ObjectKey::new("default", "web").of(Kind::LoadBalancer)],
        false,
    )
    .unwrap();
    assert_eq!(stored(&c), None);
    assert_eq!(round(), Default::default());

    // A routing someone else gave (a cluster export) is the cluster's decision: never rewritten.
    c.apply(incoming(&format!(
        "{OBJECTS}---\napiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancerRouting\nmetadata: {{name: web}}\nnetworkRef: {{name: n}}\ndestinations: [{{name: web-2, uid: u2}}]\n"
    )))
    .unwrap();
    assert_eq!(round(), Default::default());
    assert_eq!(stored(&c), Some((vec!["web-2".into()], false)));
}

#[test]
fn a_controller_without_its_lease_writes_no_routing() {
    let Some(etcd) = EtcdServer::start_or_skip("a_controller_without_its_lease_writes_no_routing") else {
        return;
    };
    let c = etcd.client("/r/");
    c.apply(incoming(OBJECTS)).unwrap();
    let fence = c
        .block_on(campaign(c.store(), "a", 5, Duration::from_millis(50)))
        .unwrap();
    let mut raw = c.store().client().clone();
    c.block_on(raw.lease_revoke(fence.lease)).unwrap();
    let r = c.block_on(routing_round(c.store(), Some(&fence))).unwrap();
    assert_eq!((r.written.len(), r.conflicts), (0, 1), "{r:?}");
    assert_eq!(stored(&c), None);
}
