//! A hostile plugin's URL against a grant: any URL text and any allow-list answer allowed or a
//! reason, never a panic. An independent oracle checks what passes: with no `allow_internal`,
//! no address written in a URL reaches loopback, private, link-local, shared, multicast or
//! unspecified space, in any spelling the URL parser accepts (decimal, hex, octal, IPv6 forms
//! that carry an IPv4 address), and what passes was allowed by an entry for its scheme.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use plugboard::HttpGrant;

#[derive(Arbitrary, Debug)]
struct Attempt<'a> {
    allow: Vec<&'a str>,
    /// Allow the URL's own destination too, so that only the address policy can refuse it.
    allow_own_destination: bool,
    /// An `allow_internal` IPv4 block, as address and prefix length.
    allow_internal: Option<(u32, u8)>,
    /// An IP written into a URL in one of several spellings, or free URL text.
    address: Option<(u128, u8)>,
    url: &'a str,
    method: &'a str,
}

/// The IPv4 space no plugin may reach, written from the RFCs, not from the host's table.
fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || a >= 240
}

/// The IPv6 space no plugin may reach, and every IPv6 form that carries an IPv4 address.
fn internal_v6(ip: Ipv6Addr) -> bool {
    let n = u128::from(ip);
    let segments = ip.segments();
    let embedded = |v4: u32| internal_v4(Ipv4Addr::from(v4));
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        || (n >> 32 == 0xffff && embedded(n as u32))
        || (n >> 32 == 0 && embedded(n as u32))
        || (n >> 32 == 0xffff_0000 && embedded(n as u32))
        || (n >> 32 == 0x0064_ff9b_0000_0000_0000_0000 && embedded(n as u32))
        || (segments[0] == 0x2002 && embedded((n >> 80) as u32))
}

fn spell(value: u128, form: u8) -> String {
    let v4 = value as u32;
    let [a, b, c, d] = v4.to_be_bytes();
    match form % 8 {
        0 => format!("http://{}/", Ipv4Addr::from(v4)),
        1 => format!("http://{v4}/"),
        2 => format!("http://0x{v4:x}/"),
        3 => format!("http://0{v4:o}/"),
        4 => format!("http://0x{a:x}.{b}.0{c:o}.{d}/"),
        5 => format!("http://[::ffff:{}]/", Ipv4Addr::from(v4)),
        6 => format!("http://[{}]:8080/", Ipv6Addr::from(value)),
        _ => format!("https://[{:x}::{:x}]/", value >> 112, value as u16),
    }
}

fuzz_target!(|a: Attempt| {
    let text = match a.address {
        Some((value, form)) => spell(value, form),
        None => a.url.to_owned(),
    };
    let Ok(url) = url::Url::parse(&text) else { return };
    let mut allow: Vec<String> = a.allow.iter().map(|s| s.to_string()).collect();
    if a.allow_own_destination
        && let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default())
    {
        allow.push(format!("{}://{host}:{port}", url.scheme()));
    }
    let block = a.allow_internal.map(|(net, prefix)| (Ipv4Addr::from(net), prefix % 33));
    let allow_internal = block.map(|(net, prefix)| format!("{net}/{prefix}")).into_iter().collect();
    let grant = HttpGrant { allow: allow.clone(), allow_internal, ..HttpGrant::default() };
    if grant.validate().is_err() {
        return;
    }
    if plugboard::egress::policy::admit(&grant, a.method, &url).is_err() {
        return;
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return,
    };
    let internal = match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    };
    // The operator's exception: an IPv4 block, which also covers the IPv4-mapped spelling.
    let excepted = block.is_some_and(|(net, prefix)| {
        let v4 = match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        };
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        v4.is_some_and(|v4| u32::from(v4) & mask == u32::from(net) & mask)
    });
    assert!(
        !internal || excepted,
        "{text} reached internal address {ip} (allow {allow:?}, internal {block:?})"
    );
    // What passes was allowed by some entry written for its scheme.
    let scheme = format!("{}://", url.scheme());
    assert!(
        allow.iter().any(|p| p.to_ascii_lowercase().starts_with(&scheme)),
        "{text} passed an allow-list with no {scheme} entry: {allow:?}"
    );
});
