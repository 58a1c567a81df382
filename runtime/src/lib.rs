//! ironlb-runtime
