//! Phones behind NATs, made of network namespaces: each phone in its own
//! private network, one router namespace that NATs both toward the switch
//! (which stays in the test's own namespace) and drops traffic between the
//! two private networks, so that the only way between the phones is the
//! switch. Needs root, iproute2 and nftables (scripts/setup.sh installs
//! them); everything is removed when the value is dropped.
//!
//! ```text
//!  ns alice 192.168.11.2 ─┐                 ┌─ 10.200.0.2 (alice's public address)
//!                         ├─ ns router (NAT)┤
//!  ns bob   192.168.12.2 ─┘                 └─ 10.200.0.3 (bob's public address)
//!                                                  │
//!                                  test namespace: 10.200.0.1 (the switch)
//! ```

use std::process::Command;

pub const SWITCH_IP: &str = "10.200.0.1";

pub struct NatLab {
    tag: String,
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} is needed (iproute2, nftables: scripts/setup.sh): {e}",
                args[0]
            )
        });
    assert!(
        out.status.success(),
        "{args:?} failed (network namespaces need root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str]) {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all);
}

impl NatLab {
    pub fn build() -> NatLab {
        // Short: interface names are limited to 15 bytes.
        let tag = format!("ss{}", std::process::id() % 100_000);
        // A lab a killed run left behind would hold the same addresses.
        if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(name) = line.split(": ").nth(1).and_then(|n| n.split('@').next())
                    && name.starts_with("ss")
                    && name.ends_with("up")
                {
                    let _ = Command::new("ip").args(["link", "del", name]).status();
                }
            }
        }
        let lab = NatLab { tag };
        let (router, alice, bob) = (lab.ns("router"), lab.ns("alice"), lab.ns("bob"));
        for ns in [&router, &alice, &bob] {
            run(&["ip", "netns", "add", ns]);
            in_ns(ns, &["ip", "link", "set", "lo", "up"]);
        }
        // Uplink: test namespace <-> router.
        let (up, up_peer) = (format!("{}up", lab.tag), format!("{}u1", lab.tag));
        run(&[
            "ip", "link", "add", &up, "type", "veth", "peer", "name", &up_peer,
        ]);
        run(&["ip", "link", "set", &up_peer, "netns", &router]);
        run(&["ip", "addr", "add", &format!("{SWITCH_IP}/24"), "dev", &up]);
        run(&["ip", "link", "set", &up, "up"]);
        in_ns(
            &router,
            &["ip", "addr", "add", "10.200.0.2/24", "dev", &up_peer],
        );
        in_ns(
            &router,
            &["ip", "addr", "add", "10.200.0.3/24", "dev", &up_peer],
        );
        in_ns(&router, &["ip", "link", "set", &up_peer, "up"]);
        // The private networks.
        for (phone, ns, net) in [("a", &alice, "192.168.11"), ("b", &bob, "192.168.12")] {
            let (inner, outer) = (
                format!("{}{phone}0", lab.tag),
                format!("{}{phone}1", lab.tag),
            );
            run(&[
                "ip", "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ]);
            run(&["ip", "link", "set", &inner, "netns", ns]);
            run(&["ip", "link", "set", &outer, "netns", &router]);
            in_ns(
                ns,
                &["ip", "addr", "add", &format!("{net}.2/24"), "dev", &inner],
            );
            in_ns(ns, &["ip", "link", "set", &inner, "up"]);
            in_ns(
                ns,
                &["ip", "route", "add", "default", "via", &format!("{net}.1")],
            );
            in_ns(
                &router,
                &["ip", "addr", "add", &format!("{net}.1/24"), "dev", &outer],
            );
            in_ns(&router, &["ip", "link", "set", &outer, "up"]);
        }
        in_ns(&router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let rules = format!(
            "table ip lab {{\n\
               chain natpost {{ type nat hook postrouting priority 100; \
                 ip saddr 192.168.11.0/24 oifname \"{up_peer}\" snat to 10.200.0.2; \
                 ip saddr 192.168.12.0/24 oifname \"{up_peer}\" snat to 10.200.0.3; }}\n\
               chain isolate {{ type filter hook forward priority 0; \
                 ip saddr 192.168.11.0/24 ip daddr 192.168.12.0/24 drop; \
                 ip saddr 192.168.12.0/24 ip daddr 192.168.11.0/24 drop; }}\n\
             }}\n"
        );
        let rules_file = std::env::temp_dir().join(format!("{}-nft.rules", lab.tag));
        std::fs::write(&rules_file, rules).unwrap();
        in_ns(&router, &["nft", "-f", rules_file.to_str().unwrap()]);
        let _ = std::fs::remove_file(rules_file);
        lab
    }

    pub fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.tag)
    }

    /// The phone's own (private) address.
    pub fn private_ip(name: &str) -> &'static str {
        match name {
            "alice" => "192.168.11.2",
            _ => "192.168.12.2",
        }
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends and so their peers.
        for ns in ["router", "alice", "bob"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(ns)])
                .status();
        }
        // Gone with the router already, unless building stopped half way.
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}up", self.tag)])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
