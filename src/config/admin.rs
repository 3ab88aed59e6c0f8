//! `[admin]`: the optional admin listener, where the master answers `/health` and
//! `/metrics` (see `master::admin`). Process-wide: a `[[site]]` may not set it.
//!
//! ```toml
//! [admin]
//! listen = "127.0.0.1:9180"            # or "unix:/run/srvd/admin.sock"
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use toml::Spanned;

use super::raw::RawAdmin;
use super::Validator;

/// Longest unix socket path the kernel takes (`sun_path` is 108 bytes with its NUL).
const MAX_UNIX_PATH: usize = 107;

/// Where the admin listener listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminListen {
    Tcp(SocketAddr),
    /// A unix socket path, resolved against the config's directory.
    Unix(PathBuf),
}

impl fmt::Display for AdminListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminListen::Tcp(addr) => write!(f, "{addr}"),
            AdminListen::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Validator<'_> {
    /// Validates `[admin]`; `sites_on` is the listener of the sites, which the admin
    /// listener must not share.
    pub(super) fn admin(
        &mut self,
        raw: Spanned<RawAdmin>,
        sites_on: &[SocketAddr],
    ) -> Option<AdminListen> {
        let at = raw.span();
        let Some(value) = raw.into_inner().listen else {
            self.error_at(at, "missing key \"listen\" in [admin]".to_owned());
            return None;
        };
        let text = value.get_ref().as_str();
        let problem = match text.strip_prefix("unix:") {
            Some("") => "the socket path must not be empty".to_owned(),
            Some(path) if path.contains('\0') => "must not contain NUL".to_owned(),
            Some(path) => {
                let path = self.base.join(path);
                if path.as_os_str().len() <= MAX_UNIX_PATH {
                    return Some(AdminListen::Unix(path));
                }
                format!(
                    "the socket path {} is longer than {MAX_UNIX_PATH} bytes",
                    path.display()
                )
            }
            None => match text.parse::<SocketAddr>() {
                Ok(addr) if addr.port() == 0 => "the port must be between 1 and 65535".to_owned(),
                Ok(addr)
                    if sites_on.iter().any(|on| {
                        addr.port() == on.port()
                            && (addr.ip() == on.ip()
                                || addr.ip().is_unspecified()
                                || on.ip().is_unspecified())
                    }) =>
                {
                    format!("{addr} is where the sites are served (listen, or bind and port)")
                }
                Ok(addr) => return Some(AdminListen::Tcp(addr)),
                Err(_) => "expected an IP address and port such as \"127.0.0.1:9180\", or \
                           \"unix:\" and a socket path"
                    .to_owned(),
            },
        };
        self.error_at(
            value.span(),
            format!("invalid [admin] listen {text:?}: {problem}"),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    use super::AdminListen;

    fn parse(text: &str) -> Result<Option<AdminListen>, Vec<String>> {
        let root = env!("CARGO_MANIFEST_DIR");
        let text = format!("root = {:?}\nport = 8080\n{text}", format!("{root}/html"));
        Config::from_str(Path::new("/etc/srvd/srvd.toml"), &text)
            .map(|c| c.admin)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn off_by_default_tcp_or_unix() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(
            parse("[admin]\nlisten = \"127.0.0.1:9180\""),
            Ok(Some(AdminListen::Tcp("127.0.0.1:9180".parse().unwrap())))
        );
        assert_eq!(
            parse("[admin]\nlisten = \"[::1]:9180\""),
            Ok(Some(AdminListen::Tcp("[::1]:9180".parse().unwrap())))
        );
        assert_eq!(
            parse("[admin]\nlisten = \"unix:/run/srvd/admin.sock\""),
            Ok(Some(AdminListen::Unix("/run/srvd/admin.sock".into())))
        );
        // Relative to the config's directory (which need not exist for this check).
        assert_eq!(
            parse("admin = { listen = \"unix:run/admin.sock\" }"),
            Ok(Some(AdminListen::Unix("/etc/srvd/run/admin.sock".into())))
        );
        assert_eq!(
            AdminListen::Unix("/a.sock".into()).to_string(),
            "unix:/a.sock"
        );
    }

    #[test]
    fn bad_values_point_at_the_value() {
        let long = format!("unix:/{}", "x".repeat(120));
        let cases = [
            ("[admin]\n", "3:1: missing key \"listen\" in [admin]"),
            (
                "[admin]\nlisten = \"localhost:9180\"",
                "4:10: invalid [admin] listen \"localhost:9180\": expected an IP address and port",
            ),
            (
                "[admin]\nlisten = \"127.0.0.1:0\"",
                "4:10: invalid [admin] listen \"127.0.0.1:0\": the port must be between 1 and 65535",
            ),
            (
                "[admin]\nlisten = \"127.0.0.1:8080\"",
                "4:10: invalid [admin] listen \"127.0.0.1:8080\": 127.0.0.1:8080 is where the sites are served",
            ),
            (
                "[admin]\nlisten = \"unix:\"",
                "4:10: invalid [admin] listen \"unix:\": the socket path must not be empty",
            ),
            (&*format!("[admin]\nlisten = {long:?}"), "longer than 107 bytes"),
        ];
        for (text, want) in cases {
            let errors = parse(text).unwrap_err();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].contains(want), "{text:?}: {errors:?}");
        }
        let errors = parse("[admin]\nlisten = \"127.0.0.1:9180\"\nport = 1\n").unwrap_err();
        assert!(errors[0].contains("duplicate key") || errors[0].contains("unknown key"));
    }

    #[test]
    fn a_site_may_not_set_it() {
        for (text, at) in [
            (
                "[[site]]\nhosts = [\"a.example\"]\n[site.admin]\nlisten = \"127.0.0.1:9180\"",
                "5:7",
            ),
            (
                "[[site]]\nhosts = [\"a.example\"]\nadmin = { listen = \"127.0.0.1:9180\" }",
                "5:1",
            ),
        ] {
            let errors = parse(text).unwrap_err();
            assert_eq!(
                errors,
                [format!(
                    "/etc/srvd/srvd.toml:{at}: admin is process-wide: set it at the top level, not in a [[site]]"
                )]
            );
        }
    }
}
