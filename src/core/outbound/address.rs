//! Which addresses a tenant's request may reach: globally routable ones, and whatever the
//! operator's [`AllowList`] names.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

// ------------------------------------------------------------------------------------------------
// Addresses
// ------------------------------------------------------------------------------------------------

/// Whether `ip` is a globally routable unicast address (what a tenant's request may reach).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0 // "this network"
        || a == 10 // private
        || (a == 100 && (64..128).contains(&b)) // CGNAT (and Alibaba's metadata 100.100.100.200)
        || a == 127 // loopback
        || (a == 169 && b == 254) // link-local, cloud metadata 169.254.169.254
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments (192.0.0.192 metadata)
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168) // private
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224; // multicast, reserved, broadcast
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    // Forms that carry an IPv4 address are judged by it.
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let special = ip.is_unspecified()
        || ip.is_loopback()
        || segments[0] & 0xfe00 == 0xfc00 // unique local (AWS metadata fd00:ec2::254)
        || segments[0] & 0xffc0 == 0xfe80 // link-local
        || segments[0] & 0xffc0 == 0xfec0 // site-local (deprecated)
        || segments[0] & 0xff00 == 0xff00 // multicast
        || (segments[0] == 0x0064 && segments[1] == 0xff9b && segments[2] == 0x0001) // local NAT64
        || (segments[0] == 0x0100 && segments[1..4] == [0, 0, 0]) // discard-only
        || (segments[0] == 0x2001 && segments[1] < 0x0200) // IETF special-purpose (Teredo...)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || segments[0] & 0xfff0 == 0x3ff0 // documentation (3fff::/20)
        || segments[0] & 0xe000 != 0x2000; // outside global unicast 2000::/3
    !special
}

/// The IPv4 address inside an IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96) or 6to4
/// (2002::/16) IPv6 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = ip.segments();
    let tail = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if segments[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(tail(segments[6], segments[7]));
    }
    if segments[0] == 0x0064 && segments[1] == 0xff9b && segments[2..6] == [0, 0, 0, 0] {
        return Some(tail(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return Some(tail(segments[1], segments[2]));
    }
    None
}

// ------------------------------------------------------------------------------------------------
// Allow-list
// ------------------------------------------------------------------------------------------------

/// Host names and networks a tenant's URL may reach although they are not public.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AllowList {
    hosts: BTreeSet<String>,
    networks: BTreeSet<IpNet>,
}

impl AllowList {
    /// Entries such as `llm.internal`, `10.0.0.0/8`, `192.168.1.20` or `fd00::/8`; empty ones
    /// are skipped. An invalid entry is an error naming it.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, String> {
        let mut list = AllowList::default();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            if let Ok(network) = entry.parse::<IpNet>() {
                list.networks.insert(network.trunc());
            } else if let Ok(ip) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
                list.networks.insert(IpNet::from(ip));
            } else if is_host_name(entry) {
                list.hosts.insert(entry.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "`{entry}` is neither a host name nor an IP address or network (CIDR)"
                ));
            }
        }
        Ok(list)
    }

    /// Comma-separated entries (the platform config's form).
    pub fn parse_comma_separated(text: &str) -> Result<AllowList, String> {
        let entries: Vec<&str> = text.split(',').collect();
        Self::parse(&entries)
    }

    /// Both lists together.
    pub fn merged(&self, other: &AllowList) -> AllowList {
        AllowList {
            hosts: self.hosts.union(&other.hosts).cloned().collect(),
            networks: self.networks.union(&other.networks).copied().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.networks.is_empty()
    }

    /// The entries, normalised, as they would be parsed again.
    pub fn entries(&self) -> Vec<String> {
        self.hosts
            .iter()
            .cloned()
            .chain(self.networks.iter().map(IpNet::to_string))
            .collect()
    }

    fn allows_host(&self, host: &str) -> bool {
        self.hosts
            .contains(host.trim_end_matches('.').to_ascii_lowercase().as_str())
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        let canonical = canonical_ip(ip);
        self.networks
            .iter()
            .any(|network| network.contains(&ip) || network.contains(&canonical))
    }

    /// Whether a tenant's request may connect to `ip` of `host`.
    pub fn permits(&self, host: &str, ip: IpAddr) -> bool {
        is_public(ip) || self.allows_host(host) || self.allows_ip(ip)
    }
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        IpAddr::V4(_) => ip,
    }
}

fn is_host_name(text: &str) -> bool {
    let text = text.trim_end_matches('.');
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn special_purpose_addresses_are_not_public() {
        for address in [
            "127.0.0.1",
            "127.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "192.0.0.192",
            "198.18.0.1",
            "::",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2001:db8::1",
            "2001::1",
            "fec0::1",
        ] {
            assert!(!is_public(ip(address)), "{address} must not be public");
        }
    }

    #[test]
    fn global_addresses_are_public() {
        for address in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(ip(address)), "{address} must be public");
        }
    }

    #[test]
    fn the_allow_list_admits_named_hosts_and_networks() {
        let list = AllowList::parse(&[
            "LLM.internal",
            "10.0.0.0/8",
            "192.168.1.20",
            "fd00::/8",
            " ",
        ])
        .unwrap();
        assert!(list.permits("llm.internal", ip("10.9.9.9")));
        assert!(list.permits("llm.internal.", ip("127.0.0.1")));
        assert!(list.permits("other", ip("10.1.1.1")));
        assert!(list.permits("other", ip("::ffff:10.1.1.1")));
        assert!(list.permits("other", ip("192.168.1.20")));
        assert!(!list.permits("other", ip("192.168.1.21")));
        assert!(list.permits("other", ip("fd00::5")));
        assert!(!list.permits("other", ip("127.0.0.1")));
        assert!(list.permits("anything", ip("8.8.8.8")));
        assert!(AllowList::parse(&["not a host!"]).is_err());
        assert!(AllowList::parse(&["10.0.0.0/33"]).is_err());
        assert_eq!(
            AllowList::parse_comma_separated("b.example, 10.0.0.0/8")
                .unwrap()
                .entries(),
            vec!["b.example".to_owned(), "10.0.0.0/8".to_owned()]
        );
    }
}
