//! A small copyable set of [`LogFlag`]s.

use nevermore_schemas::record::LogFlag;

const ALL: [LogFlag; 5] = [
    LogFlag::Partial,
    LogFlag::Multiline,
    LogFlag::Truncated,
    LogFlag::InvalidUtf8,
    LogFlag::Unterminated,
];

/// Bitset over [`LogFlag`]; iterates in `LogFlag` declaration order.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    pub const fn empty() -> Self {
        Flags(0)
    }

    const fn bit(f: LogFlag) -> u8 {
        1 << (f as u8)
    }

    pub fn insert(&mut self, f: LogFlag) {
        self.0 |= Self::bit(f);
    }

    pub fn remove(&mut self, f: LogFlag) {
        self.0 &= !Self::bit(f);
    }

    pub const fn contains(self, f: LogFlag) -> bool {
        self.0 & Self::bit(f) != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = LogFlag> {
        ALL.into_iter().filter(move |f| self.contains(*f))
    }

    /// The flags as a `Vec`, the shape of `LogRecord.log.flags`.
    pub fn to_vec(self) -> Vec<LogFlag> {
        self.iter().collect()
    }
}

impl FromIterator<LogFlag> for Flags {
    fn from_iter<I: IntoIterator<Item = LogFlag>>(iter: I) -> Self {
        let mut f = Flags::empty();
        for x in iter {
            f.insert(x);
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_contains_iter_in_order() {
        let mut f = Flags::empty();
        assert!(f.is_empty());
        f.insert(LogFlag::Unterminated);
        f.insert(LogFlag::Partial);
        f.insert(LogFlag::Partial);
        assert!(f.contains(LogFlag::Partial));
        assert!(!f.contains(LogFlag::Multiline));
        assert_eq!(f.to_vec(), vec![LogFlag::Partial, LogFlag::Unterminated]);
        f.remove(LogFlag::Partial);
        assert_eq!(f.to_vec(), vec![LogFlag::Unterminated]);
        let all: Flags = ALL.into_iter().collect();
        assert_eq!(all.to_vec(), ALL.to_vec());
    }
}
