//! The `[compression]` table of a site: which codings, which files, which levels, where
//! encoded variants are kept. Every key is inherited on its own from the parent site.

use std::path::PathBuf;

use toml::Spanned;

use super::raw::{RawCompression, RawSize};
use super::Validator;
use crate::http::coding::Coding;
use crate::static_files::compress;

/// `min_size` when absent.
pub const DEFAULT_MIN_SIZE: u64 = 1024;
/// `max_size` when absent.
pub const DEFAULT_MAX_SIZE: u64 = 16 << 20;
/// `cache_size` when absent: encoded variants kept in memory per worker.
pub const DEFAULT_CACHE_SIZE: u64 = 32 << 20;
/// `cache_dir_size` when absent.
pub const DEFAULT_CACHE_DIR_SIZE: u64 = 1 << 30;

/// A site's compression settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    pub precompressed: bool,
    /// Codings made on the fly, in the server's preference order.
    pub on_the_fly: Vec<Coding>,
    /// The server's preference order among all codings.
    pub prefer: Vec<Coding>,
    pub min_size: u64,
    pub max_size: u64,
    /// Media types added to the built-in compressible list.
    pub types: Vec<String>,
    /// Level per coding, by `Coding::index`.
    pub levels: [u32; 3],
    pub cache_dir: Option<PathBuf>,
    pub cache_size: u64,
    pub cache_dir_size: u64,
}

impl Default for Compression {
    fn default() -> Compression {
        Compression {
            precompressed: true,
            on_the_fly: Coding::ALL.to_vec(),
            prefer: Coding::ALL.to_vec(),
            min_size: DEFAULT_MIN_SIZE,
            max_size: DEFAULT_MAX_SIZE,
            types: Vec::new(),
            levels: Coding::ALL.map(compress::default_level),
            cache_dir: None,
            cache_size: DEFAULT_CACHE_SIZE,
            cache_dir_size: DEFAULT_CACHE_DIR_SIZE,
        }
    }
}

impl Compression {
    pub fn level(&self, coding: Coding) -> u32 {
        self.levels[coding.index()]
    }
}

/// Parses "1024", "1KiB", "16MiB", "1GiB", "512B" (also "KB"/"MB"/"GB" as powers of 1000);
/// on failure the reason.
pub fn parse_size(raw: &RawSize) -> Result<u64, String> {
    let text = match raw {
        RawSize::Bytes(n) => {
            return u64::try_from(*n).map_err(|_| "must not be negative".to_owned())
        }
        RawSize::Text(t) => t.trim(),
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err("expected a number of bytes or a size such as \"16MiB\"".to_owned());
    }
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown unit {other:?} (use B, KiB, MiB or GiB)")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| "too large".to_owned())
}

impl Validator<'_> {
    /// `[compression]` over the parent's settings (or the defaults at the top level).
    pub(super) fn compression(
        &mut self,
        raw: Option<RawCompression>,
        parent: Option<&Compression>,
    ) -> Compression {
        let mut c = parent.cloned().unwrap_or_default();
        let Some(raw) = raw else {
            return c;
        };
        if let Some(v) = raw.precompressed {
            c.precompressed = v.into_inner();
        }
        if let Some(list) = raw.prefer {
            let mut prefer = self.codings("[compression] prefer", list);
            // Codings not named keep their default order after the named ones.
            for coding in Coding::ALL {
                if !prefer.contains(&coding) {
                    prefer.push(coding);
                }
            }
            c.prefer = prefer;
        }
        if let Some(list) = raw.on_the_fly {
            c.on_the_fly = self.codings("[compression] on_the_fly", list);
        }
        let prefer = c.prefer.clone();
        c.on_the_fly
            .sort_by_key(|x| prefer.iter().position(|p| p == x));
        let bounds_at = raw
            .max_size
            .as_ref()
            .or(raw.min_size.as_ref())
            .map(Spanned::span);
        if let Some(v) = raw.min_size {
            c.min_size = self
                .size("[compression] min_size", &v)
                .unwrap_or(c.min_size);
        }
        if let Some(v) = raw.max_size {
            c.max_size = self
                .size("[compression] max_size", &v)
                .unwrap_or(c.max_size);
        }
        if let Some(v) = raw.cache_size {
            c.cache_size = self
                .size("[compression] cache_size", &v)
                .unwrap_or(c.cache_size);
        }
        if let Some(v) = raw.cache_dir_size {
            c.cache_dir_size = self
                .size("[compression] cache_dir_size", &v)
                .unwrap_or(c.cache_dir_size);
        }
        if let Some(types) = raw.types {
            for t in types {
                match crate::static_files::mime::check_media_type(t.get_ref()) {
                    Ok(()) => c.types.push(t.into_inner()),
                    Err(problem) => {
                        let message = format!(
                            "invalid [compression] types entry {:?}: {problem}",
                            t.get_ref()
                        );
                        self.error_at(t.span(), message);
                    }
                }
            }
        }
        if let Some(levels) = raw.levels {
            let mut levels: Vec<_> = levels.into_iter().collect();
            levels.sort_by_key(|(k, _)| k.span().start);
            for (name, level) in levels {
                let Some(coding) = Coding::from_token(name.get_ref().as_bytes())
                    .filter(|c| c.token() == name.get_ref())
                else {
                    let message = format!(
                        "invalid [compression] levels key {:?}: expected br, zstd or gzip",
                        name.get_ref()
                    );
                    self.error_at(name.span(), message);
                    continue;
                };
                let range = compress::levels(coding);
                match u32::try_from(*level.get_ref()) {
                    Ok(n) if range.contains(&n) => c.levels[coding.index()] = n,
                    _ => {
                        let message = format!(
                            "invalid [compression] level {} for {}: must be {} to {}",
                            level.get_ref(),
                            coding.token(),
                            range.start(),
                            range.end()
                        );
                        self.error_at(level.span(), message);
                    }
                }
            }
        }
        if let Some(dir) = raw.cache_dir {
            if let Some(text) = self.path_text("[compression] cache_dir", &dir) {
                let path = self.base.join(text);
                match std::fs::create_dir_all(&path).and_then(|()| {
                    use std::os::unix::fs::PermissionsExt;
                    let meta = std::fs::metadata(&path)?;
                    if !meta.is_dir() {
                        return Err(std::io::Error::other("not a directory"));
                    }
                    if meta.permissions().mode() & 0o077 != 0 {
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
                    }
                    Ok(())
                }) {
                    Ok(()) => c.cache_dir = Some(path),
                    Err(e) => {
                        let message = format!(
                            "invalid [compression] cache_dir {text:?}: {}",
                            super::io_reason(&e)
                        );
                        self.error_at(dir.span(), message);
                    }
                }
            }
        }
        if c.min_size > c.max_size {
            let message = format!(
                "invalid [compression] bounds: min_size ({}) is larger than max_size ({})",
                c.min_size, c.max_size
            );
            match bounds_at {
                Some(span) => self.error_at(span, message),
                None => self.error_file(message),
            }
        }
        c
    }

    fn codings(&mut self, key: &str, list: Vec<Spanned<String>>) -> Vec<Coding> {
        let mut out = Vec::new();
        for item in list {
            match Coding::from_token(item.get_ref().as_bytes())
                .filter(|c| c.token() == item.get_ref())
            {
                Some(c) if !out.contains(&c) => out.push(c),
                Some(_) => {
                    let message = format!("invalid {key} entry {:?}: listed twice", item.get_ref());
                    self.error_at(item.span(), message);
                }
                None => {
                    let message = format!(
                        "invalid {key} entry {:?}: expected \"br\", \"zstd\" or \"gzip\"",
                        item.get_ref()
                    );
                    self.error_at(item.span(), message);
                }
            }
        }
        out
    }

    fn size(&mut self, key: &str, value: &Spanned<RawSize>) -> Option<u64> {
        match parse_size(value.get_ref()) {
            Ok(n) => Some(n),
            Err(problem) => {
                let shown = match value.get_ref() {
                    RawSize::Bytes(n) => n.to_string(),
                    RawSize::Text(t) => format!("{t:?}"),
                };
                self.error_at(value.span(), format!("invalid {key} {shown}: {problem}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let t = |s: &str| parse_size(&RawSize::Text(s.to_owned()));
        assert_eq!(parse_size(&RawSize::Bytes(1024)), Ok(1024));
        assert!(parse_size(&RawSize::Bytes(-1)).is_err());
        assert_eq!(t("1KiB"), Ok(1024));
        assert_eq!(t("16MiB"), Ok(16 << 20));
        assert_eq!(t("2GiB"), Ok(2 << 30));
        assert_eq!(t("10KB"), Ok(10_000));
        assert_eq!(t("512"), Ok(512));
        assert!(t("1 XB").is_err());
        assert!(t("KiB").is_err());
        assert!(t("99999999999999999999GiB").is_err());
    }
}
