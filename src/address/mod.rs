//! Addresses: parsing header address lists and single addresses.

pub mod parse;
pub mod route;
pub mod rewrite;
pub mod aliases;
pub mod verify;
