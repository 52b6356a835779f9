//! Routing through the real runtime and the default guest with directory
//! look-ups answered by the database: SQLite by default, or the MySQL/MariaDB
//! database named by `SOFTSWITCH_TEST_MYSQL_URL` (as `scripts/test.sh` does).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use softswitch::config::Config;
use softswitch::directory::{Directory, StoreDirectory};
use softswitch::metrics::Metrics;
use softswitch::plugins::GuestRegistry;
use softswitch::plugins::routing::{Reason, RouteDecision, RouteRequest};
use softswitch::secrets::Secrets;
use softswitch::store::Store;
use softswitch::store::accounts::NewAccount;
use softswitch::store::gateways::{Gateway, Transport};
use softswitch::store::voicemail::VoicemailSettings;

async fn open_store() -> (Store, Option<tempfile::TempDir>) {
    let secrets = Arc::new(Secrets::generate().unwrap());
    match std::env::var("SOFTSWITCH_TEST_MYSQL_URL") {
        Ok(url) if !url.is_empty() => (Store::open(&url, secrets).await.unwrap(), None),
        _ => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite:{}", dir.path().join("routing.db").display());
            (Store::open(&url, secrets).await.unwrap(), Some(dir))
        }
    }
}

/// Digits no other test run uses, so runs can share one MySQL database.
fn unique_digits() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:05}{:09}",
        std::process::id() % 100_000,
        nanos % 1_000_000_000
    )
}

#[tokio::test]
async fn the_default_router_decides_from_the_database() {
    let (store, _dir) = open_store().await;
    let tag = unique_digits();
    let alice = format!("alice{tag}");
    let alice_phone = format!("1{tag}");
    let bob = format!("2{tag}");
    let carol = format!("carol{tag}");
    let carol_username = format!("caroline{tag}");
    // A 9xxx prefix of this run's own, longer than any other run's gateway.
    let prefix = format!("9{tag}");
    let gateway_name = format!("carrier{tag}");

    let new = |login: &str, phone: Option<&str>, username: Option<&str>| NewAccount {
        login: login.into(),
        sip_password: "sip-secret".into(),
        phone: phone.map(Into::into),
        username: username.map(Into::into),
        ..Default::default()
    };
    store
        .add_account(&new(&alice, Some(&alice_phone), None))
        .await
        .unwrap();
    store
        .add_account(&new(&bob, Some(&bob), None))
        .await
        .unwrap();
    store
        .add_account(&new(&carol, None, Some(&carol_username)))
        .await
        .unwrap();
    store
        .set_voicemail_settings(&VoicemailSettings {
            login: bob.clone(),
            enabled: false,
            greeting: None,
            email_copy: false,
        })
        .await
        .unwrap();
    store
        .add_gateway(&Gateway {
            name: gateway_name.clone(),
            prefix: prefix.clone(),
            address: "127.0.0.1:5080".into(),
            transport: Transport::Udp,
            recording: None,
        })
        .await
        .unwrap();

    let metrics = Metrics::new();
    let cache = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest-cache");
    let directory: Arc<dyn Directory> = Arc::new(StoreDirectory::new(store.clone(), None));
    let guests = BTreeMap::from([(
        "routing".to_string(),
        guest(guest_wasm(DEFAULT_ROUTER), &[]),
    )]);
    let registry = GuestRegistry::load(plugins(&cache, &metrics), &guests, directory)
        .await
        .unwrap();
    let router = registry.router(&Config::default()).unwrap();

    let decide = |request: RouteRequest| {
        let router = router.clone();
        async move { router.route(&request).await }
    };
    let to_user = |login: &str| RouteDecision::ToUser {
        login: login.into(),
    };

    assert_eq!(decide(call(&alice, &bob)).await.decision, to_user(&bob));
    assert_eq!(
        decide(call(&bob, &alice_phone)).await.decision,
        to_user(&alice),
        "by phone"
    );
    assert_eq!(
        decide(call(&alice, &carol_username)).await.decision,
        to_user(&carol),
        "by username"
    );
    assert_eq!(
        decide(call(&alice, &format!("nobody{tag}"))).await.decision,
        RouteDecision::Reject {
            code: 404,
            reason: "Not Found".into()
        }
    );
    let number = format!("{prefix}1234");
    let offnet = decide(call(&alice, &format!("int{number}"))).await;
    assert_eq!(
        offnet.decision,
        RouteDecision::ToGateway {
            gateway: gateway_name.clone(),
            number
        }
    );
    assert_eq!(
        offnet.caller_id.unwrap().user.as_deref(),
        Some(alice_phone.as_str())
    );
    let no_answer = |to: &str| RouteRequest {
        reason: Reason::NoAnswer,
        ..call(&carol, to)
    };
    assert_eq!(
        decide(no_answer(&alice)).await.decision,
        RouteDecision::ToService {
            name: "voicemail-deposit".into(),
            args: vec![alice.clone()]
        }
    );
    assert_eq!(
        decide(no_answer(&bob)).await.decision,
        RouteDecision::Reject {
            code: 480,
            reason: "Temporarily Unavailable".into()
        },
        "voicemail turned off in the database"
    );

    // is-registered answers from the bindings table when no registrar runs.
    let lookups = StoreDirectory::new(store.clone(), None);
    assert!(!lookups.is_registered(&bob).await.unwrap());
    let now = softswitch::store::now_secs();
    let binding = softswitch::store::location::Binding {
        login: bob.clone(),
        binding_key: "sip:bob@192.0.2.1:5060".into(),
        contact: "sip:bob@192.0.2.1:5060".into(),
        instance: None,
        reg_id: None,
        call_id: "c".into(),
        cseq: 1,
        expires_at: now + 60,
        transport: "udp".into(),
        source: "192.0.2.1:5060".into(),
        local: "127.0.0.1:5060".into(),
        node: "sip:127.0.0.1:5060".into(),
        user_agent: None,
    };
    store
        .apply_registration(&bob, false, &[], &[binding])
        .await
        .unwrap();
    assert!(lookups.is_registered(&bob).await.unwrap());

    for login in [&alice, &bob, &carol] {
        assert!(store.delete_account(login).await.unwrap());
    }
    assert!(store.delete_gateway(&gateway_name).await.unwrap());
}
