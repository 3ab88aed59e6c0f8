//! The `Date` header value, formatted once a second rather than once a response
//! (cf. hyper `common/date.rs`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
pub const DATE_LEN: usize = 29;

/// A cached IMF-fixdate for the current second.
pub struct DateCache {
    secs: u64,
    text: [u8; DATE_LEN],
}

impl Default for DateCache {
    fn default() -> Self {
        let mut cache = DateCache {
            secs: u64::MAX,
            text: [b' '; DATE_LEN],
        };
        cache.refresh(SystemTime::now());
        cache
    }
}

impl DateCache {
    /// Re-formats only when the second has changed.
    pub fn refresh(&mut self, now: SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs {
            self.secs = secs;
            let s = httpdate::fmt_http_date(now);
            let bytes = s.as_bytes();
            if bytes.len() == DATE_LEN {
                self.text.copy_from_slice(bytes);
            }
        }
    }

    /// The current value, e.g. b"Sun, 06 Nov 1994 08:49:37 GMT".
    pub fn get(&self) -> &[u8] {
        &self.text
    }

    /// Seconds since the epoch of the cached value.
    pub fn secs(&self) -> u64 {
        self.secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_imf_fixdate() {
        let mut d = DateCache::default();
        d.refresh(UNIX_EPOCH + Duration::from_secs(784111777));
        assert_eq!(d.get(), b"Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
