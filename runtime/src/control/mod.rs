//! Control: from validated objects (`ironlb_api`) to device state. [`controller`] derives the desired `LbSpec` of
//! every LoadBalancer from validation's parsed values; [`alloc`] holds the durable lb_id and address allocations
//! the controller takes as input; [`plan`] is the pure planner of device operations; [`drain`] is the drain policy
//! (which targets that leave stay on the device as draining, and until when). The reconciler (`crate::reconcile`)
//! drives them and executes the plan.

pub mod alloc;
pub mod controller;
pub mod drain;
pub mod plan;
pub mod reconcile;
