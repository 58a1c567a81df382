//! Control: from validated objects (`ironlb_api`) to device state. [`controller`] derives the desired `LbSpec` of
//! every LoadBalancer from validation's parsed values; [`alloc`] holds the durable lb_id and address allocations
//! the controller takes as input. The reconciler (`crate::reconcile`) drives both.

pub mod alloc;
pub mod controller;
