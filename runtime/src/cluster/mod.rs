//! Cluster mode in the runtime (issue 17, docs/cluster.md): the `ironlb apply`, `delete` and `get` commands that
//! write and read IronCore objects in etcd through [`ironlb_cluster`], and the per-host [`agent`].

pub mod agent;
pub mod agent_cli;
pub mod cli;
pub mod controller_cli;
mod print;
