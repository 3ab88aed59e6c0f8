//! The site labels of the metrics: name → index, owned by the master.
//!
//! A site's label is its name (its first host name, "default" for a top-level site without
//! `hosts`). The table only grows: a site removed by a reload keeps its index (its counts
//! stay exported), a site added gets the next free one, a renamed site is a new name. The
//! first [`LABELS`] names get their own index, every later one shares [`OTHER`], so a
//! config that churns through site names cannot grow the exposition without bound.
//!
//! The master assigns the indices when it loads a config, before it forks the generation;
//! workers only carry the index of each of their sites (`site::Site::label`). Requests for
//! a host no site claims are answered by the default site and count under its label: the
//! Host header itself never becomes a label.

use super::{LABELS, OTHER};

/// Append-only table of label names.
#[derive(Debug, Default)]
pub struct Labels {
    names: Vec<String>,
    /// Some site got [`OTHER`] (then the "other" series are exported).
    overflowed: bool,
}

impl Labels {
    /// The index of each name in `sites` (in order), adding the names not seen before.
    pub fn assign<'a>(&mut self, sites: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
        sites.into_iter().map(|name| self.index(name)).collect()
    }

    fn index(&mut self, name: &str) -> u8 {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return i as u8;
        }
        if self.names.len() < LABELS {
            self.names.push(name.to_owned());
            return (self.names.len() - 1) as u8;
        }
        self.overflowed = true;
        OTHER
    }

    /// Every label with its index, in index order; "other" last when it is in use.
    pub fn all(&self) -> impl Iterator<Item = (u8, &str)> {
        self.names
            .iter()
            .enumerate()
            .map(|(i, n)| (i as u8, n.as_str()))
            .chain(self.overflowed.then_some((OTHER, "other")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_stable_and_append_only() {
        let mut t = Labels::default();
        assert_eq!(t.assign(["default", "a.example"]), [0, 1]);
        // A reload: one site removed, one added, one kept; order in the file is irrelevant.
        assert_eq!(t.assign(["b.example", "default"]), [2, 0]);
        assert_eq!(t.assign(["a.example"]), [1]);
        let all: Vec<_> = t.all().collect();
        assert_eq!(all, [(0, "default"), (1, "a.example"), (2, "b.example")]);
    }

    #[test]
    fn past_the_bound_names_share_other() {
        let mut t = Labels::default();
        let names: Vec<String> = (0..LABELS + 3).map(|i| format!("s{i}.example")).collect();
        let got = t.assign(names.iter().map(String::as_str));
        assert_eq!(got[LABELS - 1], (LABELS - 1) as u8);
        assert_eq!(&got[LABELS..], [OTHER; 3]);
        // Known names keep their index; new ones still go to "other".
        assert_eq!(t.assign(["s0.example", "new.example"]), [0, OTHER]);
        let all: Vec<_> = t.all().collect();
        assert_eq!(all.len(), LABELS + 1);
        assert_eq!(all.last(), Some(&(OTHER, "other")));
    }
}
