//! Given a normalised request path, picks the file to serve (cf. SWS `resolve.rs`).
//!
//! Files are opened beneath the site's root with [`RootDir::open_beneath`], so no symlink,
//! `..` or encoded trick reaches outside it (and so never into another site's root). A
//! directory is served through its index file; without one it is listed when the site's
//! `listing` allows the path, else 404. What else a site may ask for:
//! - `trailing_slash = "redirect"` (default): `/dir` → 301 `/dir/`; `"ignore"`: `/dir`
//!   serves the index as `/dir/` would;
//! - `clean_urls`: `/about` serves `about.html` when nothing is called `about`, and a
//!   request that names an existing `.html` file is redirected (308) to its clean URL.

use std::fs::{File, Metadata};
use std::io;

use crate::config::site::TrailingSlash;
use crate::http::Status;
use crate::site::Site;
use crate::static_files::path::{self, encode_query, Target};
use crate::sys::fs::RootDir;

/// What a path resolves to.
pub enum Resolved {
    /// A regular file, its metadata, and the path whose extension picks the MIME type.
    File {
        file: File,
        meta: Metadata,
        path: String,
    },
    /// A redirect with this status and Location (query kept).
    Redirect(Status, String),
    /// A directory without an index that the site lists.
    Listing(File),
}

/// Resolves `target` against the site's root.
pub fn resolve(site: &Site, target: &Target) -> Result<Resolved, Status> {
    let config = &site.config;
    let rel = target.path.trim_start_matches('/');
    let (file, meta) = match open(&site.root, rel) {
        Ok(found) => found,
        Err(Status::NotFound) if config.clean_urls && !target.path.ends_with('/') => {
            let (file, meta) = open(&site.root, &format!("{rel}.html"))?;
            if !meta.is_file() {
                return Err(Status::NotFound);
            }
            let path = format!("{}.html", target.path);
            return Ok(Resolved::File { file, meta, path });
        }
        Err(other) => return Err(other),
    };
    if meta.is_file() {
        if config.clean_urls {
            if let Some(clean) = clean_url(&target.path) {
                return Ok(Resolved::Redirect(
                    Status::PermanentRedirect,
                    location(clean, target.query),
                ));
            }
        }
        return Ok(Resolved::File {
            file,
            meta,
            path: target.path.to_string(),
        });
    }
    if !meta.is_dir() {
        // FIFOs, sockets, devices: nothing to serve.
        return Err(Status::NotFound);
    }
    let slash = target.path.ends_with('/');
    if !slash && config.trailing_slash == TrailingSlash::Redirect {
        // The Location is built from the normalised path, which always starts with exactly
        // one '/', so it can never become a scheme-relative "//host" redirect; encoding
        // keeps CR, LF and other bytes out of the header.
        let with_slash = format!("{}/", target.path);
        return Ok(Resolved::Redirect(
            Status::MovedPermanently,
            location(&with_slash, target.query),
        ));
    }
    let (dir_rel, dir_path) = if slash {
        (rel.to_owned(), target.path.to_string())
    } else {
        (format!("{rel}/"), format!("{}/", target.path))
    };
    for index in &config.index {
        match open(&site.root, &format!("{dir_rel}{index}")) {
            Ok((file, meta)) if meta.is_file() => {
                let path = format!("{dir_path}{index}");
                return Ok(Resolved::File { file, meta, path });
            }
            Ok(_) | Err(Status::NotFound) => continue,
            Err(other) => return Err(other),
        }
    }
    if config.listing.allows(&dir_path) {
        return Ok(Resolved::Listing(file));
    }
    Err(Status::NotFound)
}

/// The clean URL of a path naming an `.html` file: `/a.html` → `/a`, `/d/index.html` →
/// `/d/`.
fn clean_url(path: &str) -> Option<&str> {
    if let Some(dir) = path.strip_suffix("index.html").filter(|d| d.ends_with('/')) {
        return Some(dir);
    }
    path.strip_suffix(".html")
        .filter(|p| !p.is_empty() && !p.ends_with('/'))
}

/// A Location for `path` with the request's query.
fn location(path: &str, query: Option<&str>) -> String {
    let mut location = path::encode_for_location(path);
    if let Some(q) = query {
        location.push('?');
        location.push_str(&encode_query(q));
    }
    location
}

/// Opens and stats one path; "not there", "not allowed" and "outside the root" all look
/// the same to the client (404), so nothing leaks about the file system.
pub fn open(root: &RootDir, rel: &str) -> Result<(File, Metadata), Status> {
    let file = root.open_beneath(rel).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => Status::NotFound,
        _ => match e.raw_os_error() {
            Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG) | Some(libc::ELOOP) => Status::NotFound,
            _ => {
                crate::log::error(format_args!("open \"{rel}\" failed: {e}"));
                Status::InternalServerError
            }
        },
    })?;
    let meta = file.metadata().map_err(|_| Status::InternalServerError)?;
    Ok((file, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_urls() {
        assert_eq!(clean_url("/about.html"), Some("/about"));
        assert_eq!(clean_url("/d/index.html"), Some("/d/"));
        assert_eq!(clean_url("/index.html"), Some("/"));
        assert_eq!(clean_url("/d/.html"), None);
        assert_eq!(clean_url("/a.htm"), None);
        assert_eq!(clean_url("/a.css"), None);
    }
}
