//! ironlb hardware contract.
