//! Process limits the switch needs raised before it serves.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises the soft limit on open files to the hard limit and returns the
/// new soft limit (`None`: unlimited).
///
/// Every anchored call holds four relay sockets and every TCP/TLS client a
/// connection, while shells and systemd start services with a soft limit of
/// 1,024: without this, about 250 concurrent anchored calls would exhaust
/// it. The hard limit is the administrator's ceiling and is left alone.
pub fn raise_open_files() -> std::io::Result<Option<u64>> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(limit.maximum)
}

/// File descriptors the media relay can hold with every pair of its port
/// range in use, plus a margin for listeners, connections and the database.
pub fn files_needed(port_min: u16, port_max: u16) -> u64 {
    u64::from(port_max.saturating_sub(port_min)) + 1 + 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let soft = raise_open_files().unwrap();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(soft, now.current);
        assert_eq!(now.current, now.maximum);
    }

    #[test]
    fn the_whole_port_range_is_counted() {
        assert_eq!(files_needed(20000, 29999), 10_000 + 1024);
    }
}
