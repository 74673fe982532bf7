//! Which sockets a child may use: none (the default), any, or an allow-list of
//! addresses, CIDR ranges and ports, for TCP, UDP or both.
//!
//! ```text
//!   network = true                                     any address, and name lookups
//!   network = ["127.0.0.1:8080", "tcp:10.0.0.0/8:443", "udp:[::1]:53", "dns"]
//! ```
//!
//! A rule is `[tcp:|udp:]ADDRESS[/PREFIX][:PORT[-PORT]]` (an IPv6 address in
//! brackets), or `dns` for name lookups. A rule names an address a child may connect
//! or send datagrams to, or bind and listen on; the child accepts connections and
//! receives datagrams only from addresses in a rule's range (whatever their port).
//! The bind the system makes for an outgoing connection (the wildcard address, port
//! 0) is allowed whenever a rule of that protocol is.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The sockets a child may use. Default none.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Network {
    /// No socket and no name lookup.
    #[default]
    None,
    /// Any address, any port, and name lookups.
    Any,
    /// Only what the rules allow.
    Only(Vec<NetRule>),
}

impl Network {
    /// Whether a child may use a socket at all.
    pub fn is_granted(&self) -> bool {
        !matches!(self, Network::None)
    }

    /// Whether a child may resolve names.
    pub fn allows_name_lookup(&self) -> bool {
        match self {
            Network::None => false,
            Network::Any => true,
            Network::Only(rules) => rules.contains(&NetRule::Dns),
        }
    }

    /// Whether a child may use `addr` over `protocol` for `purpose`.
    pub fn allows(&self, protocol: Protocol, addr: SocketAddr, purpose: SocketUse) -> bool {
        let rules = match self {
            Network::None => return false,
            Network::Any => return true,
            Network::Only(rules) => rules,
        };
        let ephemeral = addr.ip().is_unspecified() && addr.port() == 0;
        rules.iter().any(|rule| match *rule {
            NetRule::Dns => false,
            NetRule::Addr { protocol: p, .. } if !p.covers(protocol) => false,
            NetRule::Addr { .. } if purpose == SocketUse::Bind && ephemeral => true,
            NetRule::Addr { net, prefix, .. } if purpose == SocketUse::Peer => {
                in_range(net, prefix, addr.ip())
            }
            NetRule::Addr { net, prefix, ports, .. } => {
                in_range(net, prefix, addr.ip())
                    && ports.is_none_or(|(lo, hi)| (lo..=hi).contains(&addr.port()))
            }
        })
    }
}

/// What a child is doing with a socket address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SocketUse {
    /// Binding or listening on a local address.
    Bind,
    /// Connecting or sending a datagram to a remote address.
    Connect,
    /// Accepting a connection or receiving a datagram from a remote address.
    Peer,
}

impl From<bool> for Network {
    fn from(any: bool) -> Self {
        if any { Network::Any } else { Network::None }
    }
}

/// A transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// What a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Transport {
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
    /// Both.
    Both,
}

impl Transport {
    fn covers(self, protocol: Protocol) -> bool {
        matches!(
            (self, protocol),
            (Transport::Both, _)
                | (Transport::Tcp, Protocol::Tcp)
                | (Transport::Udp, Protocol::Udp)
        )
    }
}

/// One allowed destination, or name lookups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NetRule {
    /// Addresses in `net/prefix`, on `ports` (all when `None`), over `protocol`.
    Addr {
        /// TCP, UDP or both.
        protocol: Transport,
        /// The network's address.
        net: IpAddr,
        /// The prefix length: 32 (or 128) for one address.
        prefix: u8,
        /// The ports, first and last; all when `None`.
        ports: Option<(u16, u16)>,
    },
    /// Name lookups (`wasi:sockets/ip-name-lookup`).
    Dns,
}

/// Why a rule was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{rule:?} is not a network rule ({why}): use [tcp:|udp:]ADDRESS[/PREFIX][:PORT[-PORT]] or dns"
)]
pub struct BadNetRule {
    /// The rule as written.
    pub rule: String,
    /// What is wrong with it.
    pub why: String,
}

impl FromStr for NetRule {
    type Err = BadNetRule;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| BadNetRule { rule: text.to_owned(), why: why.to_owned() };
        if text == "dns" {
            return Ok(NetRule::Dns);
        }
        let (protocol, rest) = match text.split_once(':') {
            Some(("tcp", rest)) => (Transport::Tcp, rest),
            Some(("udp", rest)) => (Transport::Udp, rest),
            _ => (Transport::Both, text),
        };
        // An IPv6 address is in brackets, so that its colons are not a port's.
        let (address, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (address, after) = v6.split_once(']').ok_or_else(|| bad("no closing ]"))?;
                match after {
                    "" => (address, None),
                    _ => {
                        (address, Some(after.strip_prefix(':').ok_or_else(|| bad("text after ]"))?))
                    }
                }
            }
            None => match rest.rsplit_once(':') {
                Some((address, port)) => (address, Some(port)),
                None => (rest, None),
            },
        };
        let (ip, prefix) = match address.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (address, None),
        };
        let net: IpAddr = ip.parse().map_err(|_| bad("not an IP address"))?;
        let full = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => {
                p.parse::<u8>().ok().filter(|&p| p <= full).ok_or_else(|| bad("bad prefix"))?
            }
            None => full,
        };
        let ports = match port {
            None => None,
            Some(port) => {
                let (lo, hi) = port.split_once('-').unwrap_or((port, port));
                let parse = |p: &str| p.parse::<u16>().map_err(|_| bad("bad port"));
                let (lo, hi) = (parse(lo)?, parse(hi)?);
                if lo > hi {
                    return Err(bad("ports in the wrong order"));
                }
                Some((lo, hi))
            }
        };
        Ok(NetRule::Addr { protocol, net, prefix, ports })
    }
}

impl fmt::Display for NetRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetRule::Dns => f.write_str("dns"),
            NetRule::Addr { protocol, net, prefix, ports } => {
                match protocol {
                    Transport::Tcp => f.write_str("tcp:")?,
                    Transport::Udp => f.write_str("udp:")?,
                    Transport::Both => {}
                }
                let full = if net.is_ipv4() { 32 } else { 128 };
                match (net, *prefix == full) {
                    (IpAddr::V6(v6), true) => write!(f, "[{v6}]")?,
                    (IpAddr::V6(v6), false) => write!(f, "[{v6}/{prefix}]")?,
                    (IpAddr::V4(v4), true) => write!(f, "{v4}")?,
                    (IpAddr::V4(v4), false) => write!(f, "{v4}/{prefix}")?,
                }
                match ports {
                    Some((lo, hi)) if lo == hi => write!(f, ":{lo}"),
                    Some((lo, hi)) => write!(f, ":{lo}-{hi}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Whether `ip` is in `net/prefix` (an IPv4 address mapped into IPv6 counts as IPv4).
fn in_range(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(rules: &[&str]) -> Network {
        Network::Only(rules.iter().map(|r| r.parse().unwrap()).collect())
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn rules_parse_and_print_back() {
        for text in [
            "127.0.0.1:8080",
            "tcp:10.0.0.0/8:443",
            "udp:[::1]:53",
            "192.168.1.0/24",
            "tcp:0.0.0.0/0:9000-9010",
            "[fe80::/10]",
            "dns",
        ] {
            assert_eq!(text.parse::<NetRule>().unwrap().to_string(), text);
        }
        for bad in
            ["", "tcp:", "localhost:80", "10.0.0.0/33", "1.2.3.4:70000", "1.2.3.4:9-8", "[::1"]
        {
            assert!(bad.parse::<NetRule>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_what_the_rules_name_is_allowed() {
        let net = rules(&["tcp:127.0.0.1:8080", "10.0.0.0/8:443", "udp:[::1]:53"]);
        let connect = |p, a: &str| net.allows(p, addr(a), SocketUse::Connect);
        assert!(connect(Protocol::Tcp, "127.0.0.1:8080"));
        assert!(!connect(Protocol::Tcp, "127.0.0.1:8081"));
        assert!(!connect(Protocol::Udp, "127.0.0.1:8080"), "tcp only");
        assert!(connect(Protocol::Udp, "10.200.3.4:443"));
        assert!(!connect(Protocol::Tcp, "11.0.0.1:443"));
        assert!(connect(Protocol::Udp, "[::1]:53"));
        assert!(connect(Protocol::Tcp, "[::ffff:127.0.0.1]:8080"), "mapped v4");
        // The ephemeral bind of an outgoing connection goes with any rule of its kind;
        // any other bind must be named.
        assert!(net.allows(Protocol::Tcp, addr("0.0.0.0:0"), SocketUse::Bind));
        assert!(net.allows(Protocol::Tcp, addr("127.0.0.1:8080"), SocketUse::Bind));
        assert!(!net.allows(Protocol::Tcp, addr("0.0.0.0:8080"), SocketUse::Bind));
        assert!(!net.allows(Protocol::Tcp, addr("127.0.0.1:0"), SocketUse::Bind));
        // Peers are checked by address, whatever their (ephemeral) port.
        assert!(net.allows(Protocol::Tcp, addr("127.0.0.1:50123"), SocketUse::Peer));
        assert!(!net.allows(Protocol::Tcp, addr("127.0.0.2:50123"), SocketUse::Peer));
        assert!(!net.allows_name_lookup());
        assert!(rules(&["dns"]).allows_name_lookup());
        assert!(!Network::None.allows(Protocol::Tcp, addr("127.0.0.1:1"), SocketUse::Connect));
        assert!(Network::Any.allows(Protocol::Udp, addr("8.8.8.8:53"), SocketUse::Connect));
    }
}
