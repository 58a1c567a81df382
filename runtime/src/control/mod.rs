//! Control: from validated objects (`ironlb_api`) to device state. [`controller`] derives the desired `LbSpec` of
//! every LoadBalancer from validation's parsed values; [`alloc`] holds the durable lb_id and address allocations
//! the controller takes as input; [`plan`] is the pure planner of device operations. The reconciler
//! (`crate::reconcile`) drives all three and executes the plan.

pub mod alloc;
pub mod controller;
pub mod plan;
pub mod reconcile;
