//! ironlb-sim
