//! Given a normalised request path, picks the file to serve (cf. SWS `resolve.rs`).
//!
//! Files are opened beneath the root with [`RootDir::open_beneath`], so no symlink, `..`
//! or encoded trick reaches outside it. A directory is served through its index file; a
//! directory requested without its trailing slash is redirected to it. There are no
//! listings: a directory without an index is 404.

use std::fs::{File, Metadata};
use std::io;

use crate::http::Status;
use crate::static_files::path::{self, Target};
use crate::static_files::Site;
use crate::sys::fs::RootDir;

/// What a path resolves to.
pub enum Resolved {
    /// A regular file, its metadata, and the path whose extension picks the MIME type.
    File {
        file: File,
        meta: Metadata,
        path: String,
    },
    /// 301 to this Location (path with '/' added, query kept).
    Redirect(String),
}

/// Resolves `target` against the site's root.
pub fn resolve(site: &Site, target: &Target) -> Result<Resolved, Status> {
    let rel = target.path.trim_start_matches('/');
    let (file, meta) = open(&site.root, rel)?;
    if meta.is_file() {
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
    if !target.path.ends_with('/') {
        // The Location is built from the normalised path, which always starts with exactly
        // one '/', so it can never become a scheme-relative "//host" redirect; encoding
        // keeps CR, LF and other bytes out of the header.
        let mut location = path::encode_for_location(&target.path);
        location.push('/');
        if let Some(q) = target.query {
            location.push('?');
            location.push_str(&encode_query(q));
        }
        return Ok(Resolved::Redirect(location));
    }
    for index in &site.config.index {
        let candidate = format!("{rel}{index}");
        match open(&site.root, &candidate) {
            Ok((file, meta)) if meta.is_file() => {
                let path = format!("{}{index}", target.path);
                return Ok(Resolved::File { file, meta, path });
            }
            Ok(_) | Err(Status::NotFound) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(Status::NotFound)
}

/// Opens and stats one path; "not there", "not allowed" and "outside the root" all look
/// the same to the client (404), so nothing leaks about the file system.
fn open(root: &RootDir, rel: &str) -> Result<(File, Metadata), Status> {
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

/// Keeps a query as it came but for bytes that do not belong in a header.
fn encode_query(q: &str) -> String {
    q.chars().filter(|c| !c.is_control()).collect()
}
