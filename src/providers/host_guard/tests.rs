use super::*;

#[tokio::test]
async fn tricky_hosts_are_refused() {
    let guard = HostGuard::default();
    for host in [
        "127.0.0.1",
        "2130706433", // 127.0.0.1 in decimal
        "0177.0.0.1", // 127.0.0.1 in octal
        "0x7f.0.0.1", // hex
        "127.1",      // short form
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::1]",
        "[::]",
        "0.0.0.0",
        "169.254.169.254", // cloud metadata
        "[fd00:ec2::254]", // AWS metadata over IPv6
        "100.100.100.200", // Alibaba metadata (shared address space)
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "[fe80::1]",
        "[fc00::1]",
        "[64:ff9b::7f00:1]", // NAT64 of 127.0.0.1
        "[2002:7f00:1::]",   // 6to4 of 127.0.0.1
        "http://mastodon.social",
        "https://user:pw@mastodon.social",
        "mastodon.social/path",
        "mastodon.social?x=1",
    ] {
        assert!(guard.origin(host).is_err(), "{host} was accepted");
    }
    // A name that resolves to loopback passes parsing and fails resolution.
    let origin = guard.origin("localhost").unwrap();
    assert!(guard.resolve(origin.host_str().unwrap()).await.is_err());
}

#[test]
fn public_hosts_are_accepted() {
    let guard = HostGuard::default();
    for host in [
        "mastodon.social",
        "https://mastodon.social",
        "mastodon.social:8443",
        "93.184.216.34",
        "[2606:4700::1111]",
    ] {
        assert!(guard.origin(host).is_ok(), "{host} was refused");
    }
}

#[test]
fn endpoints_are_checked_by_their_origin() {
    let guard = HostGuard::new(&[Url::parse("http://127.0.0.1:4000").unwrap()]);
    assert!(guard.endpoint("https://bsky.social/oauth/token").is_ok());
    assert!(guard.endpoint("http://127.0.0.1:4000/oauth/token").is_ok());
    for bad in [
        "http://bsky.social/oauth/token",
        "https://10.0.0.1/oauth/token",
        "https://[::1]/token",
        "https://u:p@bsky.social/token",
        "https://bsky.social/token#x",
        "http://127.0.0.1:4001/oauth/token",
        "data:text/plain,x",
    ] {
        assert!(guard.endpoint(bad).is_err(), "{bad} was accepted");
    }
}

/// Issue 9, defect 6: an allowlisted origin trusts that origin only,
/// never its host name on another port or scheme.
#[tokio::test]
async fn an_allowlisted_origin_is_scheme_host_and_port_exactly() {
    let guard = HostGuard::new(&[Url::parse("http://localhost:18735").unwrap()]);
    for same in [
        "http://localhost:18735",
        "http://LOCALHOST:18735",
        "http://LocalHost:18735/",
    ] {
        assert!(guard.origin(same).is_ok(), "{same} was refused");
    }
    for other in [
        "localhost:18736",
        "https://localhost",
        "LOCALHOST:18736",
        "https://localhost:18735",
        "http://localhost:18736",
        "http://localhost",
        "http://LOCALHOST:18736",
        "localhost",
    ] {
        assert!(guard.origin(other).is_err(), "{other} was accepted");
    }
    assert!(guard.endpoint("http://localhost:18735/oauth/token").is_ok());
    assert!(
        guard
            .endpoint("https://localhost:18736/oauth/token")
            .is_err()
    );
    // A spelling of the name the allowlist does not hold is untrusted,
    // so its loopback addresses are refused at resolution.
    let dotted = guard.origin("localhost.:18736").unwrap();
    assert!(guard.resolve(dotted.host_str().unwrap()).await.is_err());

    // Default ports are the same origin as the port written out.
    let guard = HostGuard::new(&[Url::parse("https://pds.example.test").unwrap()]);
    assert!(guard.origin("pds.example.test:443").is_ok());
    assert!(guard.origin("https://PDS.example.test:443").is_ok());
    assert!(guard.origin("pds.example.test:8443").is_err());
    let guard = HostGuard::new(&[Url::parse("http://pds.example.test:80").unwrap()]);
    assert!(guard.origin("http://pds.example.test").is_ok());
    assert!(guard.origin("http://pds.example.test:8080").is_err());
}

/// Every IPv6 form that embeds a private IPv4 address, and the
/// special-purpose IPv6 ranges.
#[test]
fn ipv4_embedded_in_ipv6_and_special_ranges_are_refused() {
    let guard = HostGuard::default();
    for host in [
        "[::ffff:127.0.0.1]",         // IPv4-mapped
        "[::ffff:10.0.0.1]",          // IPv4-mapped
        "[::ffff:0:127.0.0.1]",       // IPv4-translated
        "[::ffff:0:169.254.169.254]", // IPv4-translated, metadata
        "[::ffff:0:a9fe:a9fe]",
        "[::127.0.0.1]", // IPv4-compatible
        "[::10.0.0.1]",
        "[::8.8.8.8]", // IPv4-compatible is deprecated: refused whatever it holds
        "[64:ff9b::127.0.0.1]", // NAT64 well-known
        "[64:ff9b::a9fe:a9fe]",
        "[64:ff9b::192.168.0.1]",
        "[64:ff9b:1::a00:1]", // NAT64 local-use
        "[64:ff9b:1:7f00:1::]",
        "[2002:a00:1::]",                         // 6to4 of 10.0.0.1
        "[2002:c0a8:101::1]",                     // 6to4 of 192.168.1.1
        "[2002:a9fe:a9fe::]",                     // 6to4 of 169.254.169.254
        "[2001:0:4136:e378:8000:63bf:80ff:fffe]", // Teredo, client 127.0.0.1 inverted
        "[2001:0:a00:1::1]",                      // Teredo, server 10.0.0.1
        "[2001::f5ff:fffe]",                      // Teredo, client 10.0.0.1 inverted
        "[fc00::1]",
        "[fdff:ffff::1]",
        "[fe80::1]",
        "[febf::1]",
        "[fec0::1]",
        "[feff::1]",
        "[ff02::1]",
        "[ff0e::1]",
        "[2001:db8::1]",
        "[2001:db8:ffff::1]",
        "[3fff::1]",
        "[100::1]",
        "[5f00::1]",
        "[2001:2::1]",  // benchmarking
        "[2001:10::1]", // ORCHID
        "[::]",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::ffff:c000:0201]", // mapped documentation address
        "192.88.99.1",
    ] {
        assert!(guard.origin(host).is_err(), "{host} was accepted");
    }
    for host in [
        "[2606:4700::1111]",
        "[2a00:1450:4001::200e]",
        // Forms in use today reach a public IPv4 host: allowed.
        "[::ffff:93.184.216.34]",
        "[::ffff:0:93.184.216.34]",
        "[64:ff9b::93.184.216.34]",
    ] {
        assert!(guard.origin(host).is_ok(), "{host} was refused");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// IPv4 addresses that must never be reached.
    fn forbidden_v4() -> impl Strategy<Value = Ipv4Addr> {
        let in_net = |net: [u8; 4], prefix: u32| {
            any::<u32>().prop_map(move |host| {
                let mask = if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - prefix)
                };
                Ipv4Addr::from((u32::from(Ipv4Addr::from(net)) & mask) | (host & !mask))
            })
        };
        prop_oneof![
            in_net([0, 0, 0, 0], 8),
            in_net([10, 0, 0, 0], 8),
            in_net([100, 64, 0, 0], 10),
            in_net([127, 0, 0, 0], 8),
            in_net([169, 254, 0, 0], 16),
            in_net([172, 16, 0, 0], 12),
            in_net([192, 0, 0, 0], 24),
            in_net([192, 0, 2, 0], 24),
            in_net([192, 88, 99, 0], 24),
            in_net([192, 168, 0, 0], 16),
            in_net([198, 18, 0, 0], 15),
            in_net([198, 51, 100, 0], 24),
            in_net([203, 0, 113, 0], 24),
            in_net([224, 0, 0, 0], 4),
            in_net([240, 0, 0, 0], 4),
        ]
    }

    /// `v4` embedded in IPv6 in one of the transition forms, with
    /// random bits wherever the form leaves them free.
    fn embed(v4: Ipv4Addr, form: u8, free: u128) -> Ipv6Addr {
        let v4 = u128::from(u32::from(v4));
        let bits = match form % 8 {
            0 => (0xffff << 32) | v4,      // ::ffff:a.b.c.d
            1 => (0xffff << 48) | v4,      // ::ffff:0:a.b.c.d
            2 => v4,                       // ::a.b.c.d
            3 => (0x0064_ff9b << 96) | v4, // 64:ff9b::/96
            4 => (0x0064_ff9b_0001 << 80) | (free & (0xffff_ffff << 32)) | v4, // 64:ff9b:1::/48
            5 => (0x2002 << 112) | (v4 << 80) | (free & ((1 << 80) - 1)), // 6to4
            6 => (0x2001_0000 << 96) | (v4 << 64) | (free & ((1 << 64) - 1)), // Teredo server
            _ => {
                (0x2001_0000 << 96)                                // Teredo client
                | (free & (((1 << 64) - 1) << 32))
                | u128::from(!(v4 as u32))
            }
        };
        Ipv6Addr::from(bits)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        #[test]
        fn an_ipv6_address_embedding_a_forbidden_ipv4_is_refused(
            v4 in forbidden_v4(),
            form in any::<u8>(),
            free in any::<u128>(),
        ) {
            prop_assert!(!is_public_v4(v4), "the generator gave a public {v4}");
            let v6 = embed(v4, form, free);
            prop_assert!(embedded_ipv4(v6).contains(&v4), "{v6} does not embed {v4}");
            prop_assert!(!is_public(IpAddr::V6(v6)), "{v6} (embedding {v4}) counts as public");
            let guard = HostGuard::default();
            let host = format!("[{v6}]");
            prop_assert!(guard.origin(&host).is_err(), "{host} was accepted");
        }

        /// Whatever it embeds, an address that is public reaches no
        /// forbidden IPv4 host.
        #[test]
        fn a_public_ipv6_address_embeds_no_forbidden_ipv4(bits in any::<u128>()) {
            let v6 = Ipv6Addr::from(bits);
            if is_public(IpAddr::V6(v6)) {
                for v4 in embedded_ipv4(v6) {
                    prop_assert!(is_public_v4(v4), "{v6} is public but embeds {v4}");
                }
            }
        }
    }
}

#[tokio::test]
async fn allowlisted_origins_are_trusted_as_given() {
    let allowed = Url::parse("http://127.0.0.1:4000").unwrap();
    let guard = HostGuard::new(&[allowed, Url::parse("https://localhost").unwrap()]);
    assert!(guard.origin("http://127.0.0.1:4000").is_ok());
    assert!(
        guard.origin("http://127.0.0.1:4001").is_err(),
        "the port is part of the origin"
    );
    assert!(guard.origin("https://127.0.0.1:4000").is_err());
    assert!(guard.resolve("localhost").await.is_ok());
}

/// RFC 6761: names under localhost are loopback without asking DNS, so
/// they are refused unless allowlisted, wherever the daemon runs.
#[tokio::test]
async fn localhost_names_are_loopback() {
    let guard = HostGuard::default();
    for name in [
        "localhost",
        "alice.localhost",
        "ALICE.LocalHost.",
        "a.b.localhost",
    ] {
        let refused = guard.resolve(name).await.unwrap_err();
        assert!(
            refused.contains("not resolve to a public address"),
            "{name}: {refused}"
        );
    }
    let guard = HostGuard::new(&[Url::parse("http://alice.localhost:4000").unwrap()]);
    let addrs = guard.resolve("alice.localhost").await.unwrap();
    assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    assert!(guard.resolve("bob.localhost").await.is_err());
    assert!(!is_localhost_name("localhost.example"));
    assert!(!is_localhost_name("notlocalhost"));
}

#[test]
fn a_bare_name_is_served_at_https_or_its_allowlisted_origin() {
    let guard = HostGuard::new(&[
        Url::parse("http://alice.localhost:4000").unwrap(),
        Url::parse("http://127.0.0.1:4001").unwrap(),
    ]);
    let served = |name: &str| guard.origin_of_name(name).map(|u| u.to_string());
    assert_eq!(
        served("alice.localhost").unwrap(),
        "http://alice.localhost:4000/"
    );
    assert_eq!(
        served("ALICE.localhost:4000").unwrap(),
        "http://alice.localhost:4000/"
    );
    assert_eq!(served("bsky.social").unwrap(), "https://bsky.social/");
    assert_eq!(
        served("bob.example:8443").unwrap(),
        "https://bob.example:8443/"
    );
    for bad in [
        "alice.localhost:4001",
        "alice.localhost/x",
        "u@alice.localhost",
        "http://alice.localhost:4000",
        "10.0.0.1",
        "[::1]",
        "",
    ] {
        assert!(guard.origin_of_name(bad).is_err(), "{bad} was accepted");
    }
}
