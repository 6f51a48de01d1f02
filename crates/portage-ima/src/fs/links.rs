//! Hard links that reach outside the tree being signed.
//!
//! Whoever can add a name to `${D}` (the `portage` user, within the
//! kernel's `protected_hardlinks`) can hard-link an inode from elsewhere
//! into the image; signing it would sign that outside file too, and Portage
//! merges it by `rename()`, keeping the outside name. So a file is signed
//! only when its link count (`st_nlink`, from `fstat` of the descriptor
//! that is signed) is no higher than the number of names for the same inode
//! found inside the tree: in `${D}` by the walk, after the merge among the
//! package's CONTENTS objects (Portage merges hard links within an image as
//! hard links). Hard links inside the image (git's commands) still sign.

use std::collections::HashMap;
use std::fs::File;

/// How many names for each inode (`st_dev`, `st_ino`) were found in a tree.
#[derive(Debug, Default)]
pub struct LinkCensus {
    seen: HashMap<(u64, u64), u64>,
}

impl LinkCensus {
    /// Counts one more name for the inode `(dev, ino)`.
    pub fn add(&mut self, dev: u64, ino: u64) {
        *self.seen.entry((dev, ino)).or_default() += 1;
    }

    /// Refuses the open `file` when it has more links than names counted
    /// for its inode ([`ima_core::Error::LinkedOutside`]); an inode never
    /// counted (replaced since) has none.
    pub fn check(&self, file: &File) -> ima_core::Result<()> {
        let st = rustix::fs::fstat(file).map_err(|e| ima_core::Error::Io {
            op: "fstat",
            source: e.into(),
        })?;
        // st_dev, st_ino and st_nlink are not u64 on every architecture.
        #[allow(clippy::unnecessary_cast)]
        let (id, links) = ((st.st_dev as u64, st.st_ino as u64), st.st_nlink as u64);
        let seen = self.seen.get(&id).copied().unwrap_or(0);
        if links > seen {
            return Err(ima_core::Error::LinkedOutside { links, seen });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_outside_the_census_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (inside, twin, outside) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        std::fs::write(&inside, b"x").unwrap();
        std::fs::hard_link(&inside, &twin).unwrap();
        let st = rustix::fs::stat(&inside).unwrap();
        #[allow(clippy::unnecessary_cast)]
        let (dev, ino) = (st.st_dev as u64, st.st_ino as u64);
        let mut census = LinkCensus::default();
        census.add(dev, ino);
        census.add(dev, ino);
        let file = File::open(&inside).unwrap();
        census.check(&file).unwrap();
        std::fs::hard_link(&inside, &outside).unwrap();
        let e = census.check(&file).unwrap_err();
        assert!(
            matches!(e, ima_core::Error::LinkedOutside { links: 3, seen: 2 }),
            "{e}"
        );
        assert!(e.to_string().contains("only 2 inside the tree"), "{e}");
        assert!(LinkCensus::default().check(&file).is_err());
    }
}
