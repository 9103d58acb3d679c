//! Who is on the other end of a request: the client address (API.md §1 `TRUSTED_PROXIES`)
//! and user agent, recorded on sessions.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// Longest user agent kept on a session; longer ones are cut, not refused.
const MAX_USER_AGENT_CHARS: usize = 512;

#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl ClientInfo {
    pub fn from_request(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Self {
        let user_agent = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect());
        ClientInfo {
            ip: peer.map(|p| client_ip(p.ip(), headers, trusted)),
            user_agent,
        }
    }
}

/// The socket peer, unless it is a trusted proxy: then the rightmost `X-Forwarded-For` entry
/// that is not itself a trusted proxy (entries further left are client-controlled). An entry
/// that is not an address ends the walk at the peer: whatever lies left of it was not written
/// by a proxy we can vouch for, so no entry there may stand in for the client.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        // A value that is not text becomes an empty entry, which ends the walk like any other
        // entry that is not an address.
        .flat_map(|v| v.to_str().unwrap_or_default().split(','))
        .collect();
    for entry in entries.into_iter().rev() {
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => continue,
            Ok(ip) => return ip,
            Err(_) => return peer,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        let ip = client_ip("203.0.113.9".parse().unwrap(), &headers("1.2.3.4"), &[]);
        assert_eq!(ip, "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn an_entry_that_is_not_an_address_ends_the_walk() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let ip = client_ip(
            "10.0.0.1".parse().unwrap(),
            &headers("198.51.100.7, bogus, 10.0.0.2"),
            &trusted,
        );
        assert_eq!(ip, "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_proxy_yields_rightmost_untrusted_entry() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let ip = client_ip(
            "10.0.0.1".parse().unwrap(),
            &headers("6.6.6.6, 198.51.100.7, 10.0.0.2"),
            &trusted,
        );
        assert_eq!(ip, "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_proxy_without_header_is_the_client() {
        let trusted = ["10.0.0.1/32".parse().unwrap()];
        let ip = client_ip("10.0.0.1".parse().unwrap(), &HeaderMap::new(), &trusted);
        assert_eq!(ip, "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
