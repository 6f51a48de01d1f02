//! The process environment as one value: `main` takes it once
//! ([`crate::context::Context`]) and the readers of Portage's variables
//! (the ebuild environment, portageq, CONFIG_PROTECT, provenance) get it
//! passed, instead of each calling `std::env`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};

/// Environment variables, as the process got them.
#[derive(Clone, Debug, Default)]
pub struct Vars(HashMap<OsString, OsString>);

impl Vars {
    /// This process's environment, now.
    pub fn of_process() -> Vars {
        std::env::vars_os().collect()
    }

    /// A variable as the process got it.
    pub fn get_os(&self, name: &str) -> Option<&OsStr> {
        self.0.get(OsStr::new(name)).map(OsString::as_os_str)
    }

    /// A variable, when set and UTF-8.
    pub fn get(&self, name: &str) -> Option<String> {
        self.get_os(name)?.to_str().map(str::to_owned)
    }

    /// A variable, when set, UTF-8 and not empty.
    pub fn nonempty(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// A lookup function, for the readers that take one (and their tests).
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| self.get(name)
    }
}

impl<K: Into<OsString>, V: Into<OsString>> FromIterator<(K, V)> for Vars {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Vars {
        Vars(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}
