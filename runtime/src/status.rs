//! What the runtime reports about each LoadBalancer and about the device: Kubernetes-style conditions whose type,
//! status and reason are enums (serialized as the usual CamelCase strings, so `status.json` and the control
//! socket's JSON read as before).

use crate::alloc::AllocError;
use crate::api::RoutingDestination;
use ironlb_driver::DriverError;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv6Addr};

/// A condition's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConditionType {
    /// The load balancer is programmed as its object asks.
    Ready,
    /// Every routing destination resolved to a target.
    TargetsResolved,
    /// The device (not a load balancer): reset by something else and re-programmed.
    DeviceRestored,
}

/// A condition's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// It does not.
    False,
}

impl From<bool> for ConditionStatus {
    fn from(b: bool) -> Self {
        if b {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// Why a condition has its status. The names are the CamelCase reasons shown in `status.json`, `ironlb status`
/// and the `reason` label of `ironlb_reconcile_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// `Ready=True`: programmed on the device.
    Programmed,
    /// The object (or its document) is invalid, or it is defined more than once.
    InvalidSpec,
    /// The load balancer has no VIP to program.
    NoVips,
    /// One of its VIPs is held by another load balancer on the device.
    VipInUse,
    /// A device table is full.
    TableFull,
    /// The driver refused the specification.
    DeviceRejected,
    /// Another device error.
    DeviceError,
    /// The device does not answer (a command timed out).
    DeviceDown,
    /// The allocation state could not be written.
    AllocatorIoError,
    /// The allocation state is corrupt.
    AllocatorStateCorrupt,
    /// A public pool is malformed.
    BadPool,
    /// No lb_id is free.
    Exhausted,
    /// The public pool of a family is exhausted.
    PoolExhausted,
    /// A Prefix has no free address.
    PrefixExhausted,
    /// No pool of the requested family.
    UnsupportedFamily,
    /// Cluster mode: the controller has not allocated the load balancer's lb_id or IPs yet.
    NotAllocated,
    /// `TargetsResolved=True`.
    Resolved,
    /// `TargetsResolved=False`: some destinations could not be used.
    DestinationsSkipped,
    /// `DeviceRestored=True`: a reset the daemon did not cause.
    DeviceReset,
    /// `DeviceRestored=False`: a reset was detected and re-programming the device did not finish (it is tried again
    /// every second).
    RestoreFailed,
}

impl Reason {
    /// The CamelCase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Programmed => "Programmed",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::NoVips => "NoVips",
            Reason::VipInUse => "VipInUse",
            Reason::TableFull => "TableFull",
            Reason::DeviceRejected => "DeviceRejected",
            Reason::DeviceError => "DeviceError",
            Reason::DeviceDown => "DeviceDown",
            Reason::AllocatorIoError => "AllocatorIoError",
            Reason::AllocatorStateCorrupt => "AllocatorStateCorrupt",
            Reason::BadPool => "BadPool",
            Reason::Exhausted => "Exhausted",
            Reason::PoolExhausted => "PoolExhausted",
            Reason::PrefixExhausted => "PrefixExhausted",
            Reason::UnsupportedFamily => "UnsupportedFamily",
            Reason::NotAllocated => "NotAllocated",
            Reason::Resolved => "Resolved",
            Reason::DestinationsSkipped => "DestinationsSkipped",
            Reason::DeviceReset => "DeviceReset",
            Reason::RestoreFailed => "RestoreFailed",
        }
    }

    /// The reason a failed device command gives a load balancer.
    pub fn of_driver(e: &DriverError) -> Reason {
        match e {
            DriverError::Timeout { .. } => Reason::DeviceDown,
            DriverError::TableFull { .. } => Reason::TableFull,
            DriverError::VipInUse { .. } => Reason::VipInUse,
            DriverError::Invalid(_) => Reason::DeviceRejected,
            _ => Reason::DeviceError,
        }
    }

    /// The reason a failed allocation gives a load balancer.
    pub fn of_alloc(e: &AllocError) -> Reason {
        match e {
            AllocError::Io { .. } => Reason::AllocatorIoError,
            AllocError::Corrupt { .. } => Reason::AllocatorStateCorrupt,
            AllocError::BadPool { .. } => Reason::BadPool,
            AllocError::Exhausted { .. } => Reason::Exhausted,
            AllocError::PoolExhausted { .. } => Reason::PoolExhausted,
            AllocError::PrefixExhausted { .. } => Reason::PrefixExhausted,
            AllocError::UnsupportedFamily { .. } => Reason::UnsupportedFamily,
            AllocError::NotGiven { .. } => Reason::NotAllocated,
        }
    }

    /// Whether the failure is the input's fault (the operator must fix a manifest): `ironlb run --once` exits 2
    /// for it, 1 for the others.
    pub fn is_bad_input(self) -> bool {
        matches!(self, Reason::InvalidSpec)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for ConditionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConditionType::Ready => "Ready",
            ConditionType::TargetsResolved => "TargetsResolved",
            ConditionType::DeviceRestored => "DeviceRestored",
        })
    }
}

impl std::fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
        })
    }
}

/// A Kubernetes-style condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type.
    #[serde(rename = "type")]
    pub kind: ConditionType,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// Why.
    pub reason: Reason,
    /// Human-readable detail.
    pub message: String,
    /// RFC 3339 time the status last changed.
    pub last_transition_time: String,
}

impl Condition {
    /// Whether the status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// What the runtime reports for one LoadBalancer (its `status`, plus what ironlb knows about the device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbStatus {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `status.ips`: every VIP (literal and allocated).
    pub ips: Vec<IpAddr>,
    /// The device's counter row for this load balancer, once allocated.
    pub lb_id: Option<u32>,
    /// The routing in use (`LoadBalancerRouting.destinations`).
    pub destinations: Vec<RoutingDestination>,
    /// Target underlay addresses currently programmed on the device.
    pub programmed_targets: Vec<Ipv6Addr>,
    /// True while the device holds an earlier configuration of this load balancer because the current one
    /// could not be programmed (see the `Ready` condition).
    pub serving_last_good: bool,
    /// `Ready` and `TargetsResolved`.
    pub conditions: Vec<Condition>,
    /// Targets that are draining (docs/operations.md "Draining targets"): still on the device for the flows
    /// pinned to them, given no new flow, cut at their deadline. Absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draining_targets: Vec<DrainingTarget>,
}

/// A target that is draining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainingTarget {
    /// Its underlay address.
    pub address: Ipv6Addr,
    /// The NetworkInterface it came from (name, in the load balancer's namespace).
    pub network_interface: Option<String>,
    /// RFC 3339 time it is cut (removed, its flows flushed) unless it is wanted again before.
    pub deadline: String,
}

impl LbStatus {
    /// The condition of type `kind`.
    pub fn condition(&self, kind: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }

    /// True when `Ready` is `True`.
    pub fn ready(&self) -> bool {
        self.condition(ConditionType::Ready)
            .is_some_and(Condition::is_true)
    }

    /// Sets `Ready=False, reason DeviceDown` (keeping the transition time when it already says so).
    pub fn mark_device_down(&mut self, message: &str, now: &str) {
        self.serving_last_good = false;
        let down = Condition {
            kind: ConditionType::Ready,
            status: ConditionStatus::False,
            reason: Reason::DeviceDown,
            message: message.to_string(),
            last_transition_time: now.to_string(),
        };
        match self
            .conditions
            .iter_mut()
            .find(|c| c.kind == ConditionType::Ready)
        {
            Some(c) if c.reason == Reason::DeviceDown => c.message = message.to_string(),
            Some(c) => *c = down,
            None => self.conditions.push(down),
        }
    }
}

/// The device stopped answering: a command timed out (docs/operations.md "A device that stops answering").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceDown {
    /// RFC 3339 time it was marked down.
    pub since: String,
    /// The error that marked it down (or of the last failed probe).
    pub error: String,
    /// Probes that failed since.
    pub failed_probes: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_serialize_as_the_camel_case_strings() {
        let c = Condition {
            kind: ConditionType::TargetsResolved,
            status: ConditionStatus::False,
            reason: Reason::DestinationsSkipped,
            message: "m".into(),
            last_transition_time: "2026-01-01T00:00:00Z".into(),
        };
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(
            j,
            r#"{"type":"TargetsResolved","status":"False","reason":"DestinationsSkipped","message":"m","lastTransitionTime":"2026-01-01T00:00:00Z"}"#
        );
        assert_eq!(serde_json::from_str::<Condition>(&j).unwrap(), c);
    }

    #[test]
    fn every_reason_serializes_as_its_name() {
        use Reason::*;
        for r in [
            Programmed,
            InvalidSpec,
            NoVips,
            VipInUse,
            TableFull,
            DeviceRejected,
            DeviceError,
            DeviceDown,
            AllocatorIoError,
            AllocatorStateCorrupt,
            BadPool,
            Exhausted,
            PoolExhausted,
            PrefixExhausted,
            UnsupportedFamily,
            NotAllocated,
            Resolved,
            DestinationsSkipped,
            DeviceReset,
            RestoreFailed,
        ] {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
    }
}
