//! Addresses: parsing header address lists and single addresses.

pub mod aliases;
pub mod local;
pub mod parse;
pub mod rewrite;
pub mod route;
