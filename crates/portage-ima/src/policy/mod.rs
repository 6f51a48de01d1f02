//! IMA policies: the rules as data ([`rule`]), read from text ([`parse`]),
//! generated for a Portage setup ([`generate`]) read from this machine
//! ([`setup`]), checked against it by `doctor` ([`review`]), and evaluated
//! over a root's files by `policy --check` ([`check`], [`walk`]), and
//! whether the running kernel's policy enforces appraisal of what root runs
//! ([`enforcement`], from the kernel's state that `crate::kernel` reads).

pub mod check;
pub(crate) mod enforcement;
pub mod eval;
pub mod generate;
pub mod parse;
pub(crate) mod review;
pub mod rule;
pub(crate) mod setup;
pub(crate) mod walk;

pub use generate::{generate, Generated, NoSafePolicy, Request, Scope, Setup};
pub use parse::{parse_policy, ParseError};
pub use rule::{Policy, Rule};
