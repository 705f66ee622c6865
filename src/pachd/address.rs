//! pachd addresses as pachctl parses them (`grpcutil.ParsePachdAddress`, 1.9.8+).

use std::fmt;
use std::net::IpAddr;

use super::error::PachdError;

/// pachd's NodePort, the port pachctl assumes when an address names none.
pub const DEFAULT_PORT: u16 = 30650;

/// Whether the connection is encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `grpc://` or `http://`: plaintext HTTP/2.
    Plaintext,
    /// `grpcs://` or `https://`: TLS.
    Tls,
}

/// A parsed pachd address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PachdAddress {
    /// Plaintext or TLS.
    pub transport: Transport,
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl PachdAddress {
    /// Parses an address the way pachctl does: optional scheme (`grpc`, `grpcs`, `http`,
    /// `https`; none means `grpc`), no user info, path, query or fragment, port 30650 when
    /// none is given.
    pub fn parse(text: &str) -> Result<PachdAddress, PachdError> {
        let fail = |reason: &str| PachdError::Address {
            address: text.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(fail("the address is empty"));
        }
        let (scheme, rest) = match trimmed.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("grpc".to_owned(), trimmed),
        };
        let transport = match scheme.as_str() {
            "grpc" | "http" => Transport::Plaintext,
            "grpcs" | "https" => Transport::Tls,
            other => {
                return Err(fail(&format!(
                    "unrecognized scheme {other:?} (use grpc://, grpcs://, http:// or https://)"
                )));
            }
        };
        // Same precedence as Go's url.Parse: the fragment, then the query, then the path
        // split off the authority.
        if rest.contains('#') {
            return Err(fail("pachd address should not include a fragment"));
        }
        if rest.contains('?') {
            return Err(fail("pachd address should not include a query string"));
        }
        let authority = match rest.find('/') {
            Some(slash) => {
                let authority = &rest[..slash];
                if authority.contains('@') {
                    return Err(fail("pachd address should not include login credentials"));
                }
                return Err(fail("pachd address should not include a path"));
            }
            None => rest,
        };
        if authority.contains('@') {
            return Err(fail("pachd address should not include login credentials"));
        }
        let (host, port) = split_host_port(authority).map_err(|reason| fail(&reason))?;
        if host.is_empty() {
            return Err(fail("the address names no host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(digits) => digits
                .parse::<u16>()
                .map_err(|_| fail(&format!("invalid port {digits:?}")))?,
        };
        Ok(PachdAddress {
            transport,
            host,
            port,
        })
    }

    /// The form pachctl writes back to its config: `grpc://host:port` or `grpcs://host:port`.
    pub fn qualified(&self) -> String {
        let scheme = match self.transport {
            Transport::Plaintext => "grpc",
            Transport::Tls => "grpcs",
        };
        format!("{scheme}://{}", self.authority())
    }

    /// `host:port`, with IPv6 hosts in brackets.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URI tonic's endpoint needs.
    pub fn endpoint_uri(&self) -> String {
        let scheme = match self.transport {
            Transport::Plaintext => "http",
            Transport::Tls => "https",
        };
        format!("{scheme}://{}", self.authority())
    }

    /// True when the host is this machine (`localhost`, 127.0.0.0/8, `::1`).
    pub fn is_loopback(&self) -> bool {
        if self.host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        self.host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
    }

    /// True for plaintext to another machine, which deserves a warning.
    pub fn is_plaintext_remote(&self) -> bool {
        self.transport == Transport::Plaintext && !self.is_loopback()
    }
}

impl fmt::Display for PachdAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.qualified())
    }
}

/// Splits `host[:port]`, `[v6][:port]`.
fn split_host_port(authority: &str) -> Result<(String, Option<&str>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed '[' in the host".to_owned())?;
        return match after {
            "" => Ok((host.to_owned(), None)),
            _ => match after.strip_prefix(':') {
                Some(port) if !port.is_empty() => Ok((host.to_owned(), Some(port))),
                Some(_) => Ok((host.to_owned(), None)),
                None => Err(format!("unexpected {after:?} after the host")),
            },
        };
    }
    match authority.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => {
            Err("an IPv6 host must be written in brackets, e.g. [::1]:30650".to_owned())
        }
        Some((host, "")) => Ok((host.to_owned(), None)),
        Some((host, port)) => Ok((host.to_owned(), Some(port))),
        None => Ok((authority.to_owned(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> PachdAddress {
        PachdAddress::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    fn reason(text: &str) -> String {
        match PachdAddress::parse(text) {
            Ok(address) => panic!("{text} parsed as {address:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn schemes_choose_the_transport_and_bare_means_grpc() {
        assert_eq!(parse("grpc://pachd:650").qualified(), "grpc://pachd:650");
        assert_eq!(parse("http://pachd:650").qualified(), "grpc://pachd:650");
        assert_eq!(
            parse("grpcs://pachd.example.com:31400").transport,
            Transport::Tls
        );
        assert_eq!(
            parse("https://pachd.example.com").qualified(),
            "grpcs://pachd.example.com:30650"
        );
        assert_eq!(parse("10.0.0.1:31000").qualified(), "grpc://10.0.0.1:31000");
        assert_eq!(parse("GRPCS://h:1").transport, Transport::Tls);
    }

    #[test]
    fn default_port_is_the_node_port() {
        assert_eq!(parse("localhost").port, 30650);
        assert_eq!(parse("grpc://localhost").port, 30650);
        assert_eq!(parse("grpc://localhost:").port, 30650);
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let address = parse("grpc://[::1]:650");
        assert_eq!(address.host, "::1");
        assert_eq!(address.authority(), "[::1]:650");
        assert!(address.is_loopback());
        assert_eq!(parse("[fe80::1]").port, 30650);
        assert!(reason("::1:650").contains("brackets"));
    }

    #[test]
    fn rejects_what_pachctl_rejects() {
        assert!(reason("grpc://user:pw@pachd:650").contains("login credentials"));
        assert!(reason("user@pachd:650").contains("login credentials"));
        assert!(reason("grpc://pachd:650/").contains("path"));
        assert!(reason("grpc://pachd:650/api").contains("path"));
        assert!(reason("grpc://pachd:650?x=1").contains("query string"));
        assert!(reason("grpc://pachd:650#frag").contains("fragment"));
        assert!(reason("tcp://pachd:650").contains("unrecognized scheme"));
        assert!(reason("grpc://pachd:99999").contains("invalid port"));
        assert!(reason("grpc://pachd:http").contains("invalid port"));
        assert!(reason("").contains("empty"));
        assert!(reason("grpc://:650").contains("no host"));
    }

    #[test]
    fn plaintext_to_another_machine_is_flagged() {
        assert!(parse("grpc://10.1.2.3:650").is_plaintext_remote());
        assert!(!parse("grpc://127.0.0.1:650").is_plaintext_remote());
        assert!(!parse("grpc://localhost:650").is_plaintext_remote());
        assert!(!parse("grpcs://10.1.2.3:650").is_plaintext_remote());
    }
}
