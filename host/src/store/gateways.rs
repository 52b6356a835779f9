//! OFFNET gateways (carriers), chosen by longest prefix of the dialled number.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::{Result, StoreError, unique_violation};
use super::{Store, now, prefix_placeholders, prefixes_of, validate};

/// SIP transport towards a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// The lowercase name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Transport {
    type Err = StoreError;

    /// Accepts `udp`, `tcp` or `tls` in any case.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Ok(Self::Udp),
            "tcp" => Ok(Self::Tcp),
            "tls" => Ok(Self::Tls),
            _ => Err(StoreError::Invalid(format!(
                "transport {s:?} must be udp, tcp or tls"
            ))),
        }
    }
}

/// A gateway: numbers starting with `prefix` are sent to `address`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gateway {
    /// Unique name, at most 64 characters.
    pub name: String,
    /// ASCII letters and digits, at most 32; empty makes this the default
    /// route for numbers no longer prefix matches.
    pub prefix: String,
    /// `host:port`.
    pub address: String,
    /// Transport to use.
    pub transport: Transport,
    /// Calls through it are recorded in this layout (`mixed`, `stereo`).
    pub recording: Option<String>,
}

fn gateway_from_row(row: &AnyRow) -> Result<Gateway> {
    let transport: String = row.try_get("transport")?;
    Ok(Gateway {
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        address: row.try_get("address")?,
        transport: transport
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("gateway transport {transport:?}")))?,
        recording: row.try_get("recording")?,
    })
}

impl Store {
    /// Adds a gateway; a taken name gives `Conflict("gateway name")`.
    /// Several gateways may share a prefix: the oldest wins the look-up.
    pub async fn add_gateway(&self, gw: &Gateway) -> Result<()> {
        validate::required("gateway name", &gw.name, validate::NAME_MAX)?;
        validate::prefix(&gw.prefix)?;
        validate::host_port("gateway address", &gw.address)?;
        if let Some(layout) = &gw.recording {
            super::accounts::validate_recording(layout)?;
        }
        let result = sqlx::query(
            "INSERT INTO gateways (name, prefix, address, transport, recording, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&gw.name)
        .bind(&gw.prefix)
        .bind(&gw.address)
        .bind(gw.transport.as_str())
        .bind(&gw.recording)
        .bind(now())
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if unique_violation(&e).is_some() => {
                Err(StoreError::Conflict("gateway name".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// All gateways, by name.
    pub async fn list_gateways(&self) -> Result<Vec<Gateway>> {
        let rows = sqlx::query(
            "SELECT name, prefix, address, transport, recording FROM gateways ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(gateway_from_row).collect()
    }

    /// Records calls through a gateway in `layout`, or stops (`None`).
    /// False if there is no gateway by that name.
    pub async fn set_gateway_recording(&self, name: &str, layout: Option<&str>) -> Result<bool> {
        if let Some(layout) = layout {
            super::accounts::validate_recording(layout)?;
        }
        let done = sqlx::query("UPDATE gateways SET recording = ? WHERE name = ?")
            .bind(layout)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Removes a gateway. False if there was none by that name.
    pub async fn delete_gateway(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM gateways WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The gateway with the longest prefix of `number` (an empty prefix
    /// matches everything), or `None`.
    pub async fn gateway_for(&self, number: &str) -> Result<Option<Gateway>> {
        // Plain `IN (…)` over the candidate prefixes, indexed on both
        // backends, instead of a dialect-specific `? LIKE CONCAT(prefix, '%')`.
        let sql = format!(
            "SELECT name, prefix, address, transport, recording FROM gateways \
             WHERE prefix IN ({}) ORDER BY id",
            prefix_placeholders()
        );
        let mut query = sqlx::query(&sql);
        for p in prefixes_of(number) {
            query = query.bind(p);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut best: Option<Gateway> = None;
        for row in &rows {
            let gw = gateway_from_row(row)?;
            // Strictly longer only, so the oldest of equal prefixes stays.
            if best
                .as_ref()
                .is_none_or(|b| gw.prefix.len() > b.prefix.len())
            {
                best = Some(gw);
            }
        }
        Ok(best)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{test_store, unique, unique_digits};
    use super::*;

    fn gw(name: &str, prefix: &str, transport: Transport) -> Gateway {
        Gateway {
            name: name.into(),
            prefix: prefix.into(),
            address: "carrier.example.net:5060".into(),
            transport,
            recording: None,
        }
    }

    #[tokio::test]
    async fn a_gateway_records_its_calls_once_told_to() {
        let store = test_store().await;
        let name = unique("grec");
        let prefix = unique_digits(12);
        let mut recorded = gw(&name, &prefix, Transport::Udp);
        recorded.recording = Some("mixed".into());
        store.add_gateway(&recorded).await.unwrap();
        let added = store.gateway_for(&prefix).await.unwrap().unwrap();
        let bad = store.set_gateway_recording(&name, Some("loud")).await;
        assert!(
            store
                .set_gateway_recording(&name, Some("stereo"))
                .await
                .unwrap()
        );
        let stereo = store.gateway_for(&prefix).await.unwrap().unwrap();
        assert!(store.set_gateway_recording(&name, None).await.unwrap());
        let off = store.gateway_for(&prefix).await.unwrap().unwrap();
        let missing = store
            .set_gateway_recording(&unique("none"), None)
            .await
            .unwrap();
        let mut wrong = gw(&unique("gbad"), &prefix, Transport::Udp);
        wrong.recording = Some("5.1".into());
        let refused = store.add_gateway(&wrong).await;
        store.delete_gateway(&name).await.unwrap();
        assert_eq!(added.recording.as_deref(), Some("mixed"));
        assert!(matches!(bad, Err(StoreError::Invalid(_))));
        assert_eq!(stereo.recording.as_deref(), Some("stereo"));
        assert_eq!(off.recording, None);
        assert!(!missing);
        assert!(matches!(refused, Err(StoreError::Invalid(_))));
    }

    /// Tests that add an empty-prefix (default) gateway change every look-up
    /// in a shared MySQL database, so they take turns.
    static DEFAULT_ROUTE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    #[tokio::test]
    async fn longest_prefix_and_default() {
        let _turn = DEFAULT_ROUTE.lock().await;
        let store = test_store().await;
        // A number space no other test uses.
        let base = unique_digits(10);
        let (short, long, other, dflt) = (unique("gs"), unique("gl"), unique("go"), unique("gd"));
        store
            .add_gateway(&gw(&short, &base[..6], Transport::Udp))
            .await
            .unwrap();
        store
            .add_gateway(&gw(&long, &base[..8], Transport::Tls))
            .await
            .unwrap();
        store
            .add_gateway(&gw(&other, &base[..8], Transport::Tcp))
            .await
            .unwrap();

        // Numbers that leave `base` right after a given length.
        let diverge = |len: usize, tail: &str| {
            let next = if base.as_bytes()[len] == b'1' {
                '2'
            } else {
                '1'
            };
            format!("{}{next}{tail}", &base[..len])
        };
        let number_long = format!("{}99", &base[..8]);
        let number_short = diverge(7, "000");
        let unrelated = diverge(5, "");
        let hit_long = store.gateway_for(&number_long).await;
        let hit_short = store.gateway_for(&number_short).await;
        let exact = store.gateway_for(&base[..6]).await;
        let before_default = store.gateway_for(&unrelated).await;
        let empty_number = store.gateway_for("").await;
        store
            .add_gateway(&gw(&dflt, "", Transport::Udp))
            .await
            .unwrap();
        let after_default = store.gateway_for(&unrelated).await;
        let long_still = store.gateway_for(&number_long).await;
        let listed = store.list_gateways().await;
        for name in [&short, &long, &other, &dflt] {
            store.delete_gateway(name).await.unwrap();
        }
        let deleted_again = store.delete_gateway(&dflt).await.unwrap();

        let name_of = |r: Result<Option<Gateway>>| r.unwrap().map(|g| g.name);
        let hit_long = hit_long.unwrap().unwrap();
        assert_eq!(hit_long.name, long, "oldest of equal prefixes wins");
        assert_eq!(hit_long.transport, Transport::Tls);
        assert_eq!(name_of(hit_short), Some(short.clone()));
        assert_eq!(name_of(exact), Some(short.clone()));
        assert_eq!(name_of(before_default), None);
        assert_eq!(name_of(empty_number), None);
        assert_eq!(name_of(after_default), Some(dflt.clone()));
        assert_eq!(name_of(long_still), Some(long.clone()));
        let listed = listed.unwrap();
        for name in [&short, &long, &other, &dflt] {
            assert!(listed.iter().any(|g| &g.name == name));
        }
        assert!(!deleted_again);
    }

    #[tokio::test]
    async fn duplicate_name_and_validation() {
        let store = test_store().await;
        let name = unique("gdup");
        let prefix = unique_digits(9);
        store
            .add_gateway(&gw(&name, &prefix, Transport::Udp))
            .await
            .unwrap();
        let dup = store.add_gateway(&gw(&name, "1", Transport::Tcp)).await;
        store.delete_gateway(&name).await.unwrap();
        assert!(matches!(dup, Err(StoreError::Conflict(ref w)) if w == "gateway name"));

        let mut bad = gw(&unique("gbad"), "12", Transport::Udp);
        bad.address = "no-port.example.net".into();
        assert!(matches!(
            store.add_gateway(&bad).await,
            Err(StoreError::Invalid(_))
        ));
        let bad_prefix = gw(&unique("gbad"), "+12", Transport::Udp);
        assert!(matches!(
            store.add_gateway(&bad_prefix).await,
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn transport_text() {
        for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
            assert_eq!(t.to_string().parse::<Transport>().unwrap(), t);
        }
        assert_eq!("TLS".parse::<Transport>().unwrap(), Transport::Tls);
        assert!("sctp".parse::<Transport>().is_err());
        assert_eq!(serde_json::to_string(&Transport::Tcp).unwrap(), "\"tcp\"");
    }
}
