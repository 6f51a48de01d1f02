//! Keylime runtime policies: the format ([`policy`]), kept current by the
//! hook ([`live`]), checked against a measurement list ([`check`]) and sent
//! to a verifier ([`push`]). docs/keylime.md explains the whole.

pub mod check;
pub mod live;
pub mod policy;
pub mod push;
pub mod queue;
pub mod state;
pub mod store;

pub use policy::*;
