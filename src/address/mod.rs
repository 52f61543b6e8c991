//! Addresses: parsing header address lists and single addresses.

pub mod parse;
