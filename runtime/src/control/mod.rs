//! Control: from desired state to device operations. [`plan`] is the pure planner the reconciler
//! ([`crate::reconcile`]) executes.

pub mod plan;
