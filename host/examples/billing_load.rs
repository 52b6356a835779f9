//! For `bench/billing.sh`: rated call records per second, written with the
//! balance debit, straight through the store (no SIP), beside plain call
//! records written by the call path's batching writer in the same run.
//!
//! ```text
//! billing_load URL DATA_DIR CALLS TASKS
//! ```
//!
//! Makes `TASKS * 4` accounts on a per-second tariff with plenty of money,
//! then, with `TASKS` tasks at once:
//! * `plain`: `CALLS` call records through `Store::insert_cdr` (what every
//!   call writes with charging off);
//! * `authorize`: `CALLS` prepaid authorisations (`Billing::authorize`: the
//!   tariff look-up and the reservation's conditional update);
//! * `settle`: those `CALLS` calls settled (`Billing::settle_call`: the
//!   debit, its ledger row, the call record with its cost and the end of
//!   the reservation in one transaction).
//!
//! Checks afterwards that every account's ledger sums to its balance, that
//! nothing stays reserved and that the costs add up, and prints one JSON
//! line of rates.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use softswitch::billing::tariffs::parse_csv;
use softswitch::billing::{Authorization, Billing, BillingConfig};
use softswitch::secrets::Secrets;
use softswitch::store::Store;
use softswitch::store::accounts::{AccountTemplate, NewAccount};
use softswitch::store::calls::{Cdr, Disposition};

/// Seconds each rated call lasts (billed per second at 0.01).
const CALL_SECS: u32 = 42;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, data_dir, calls, tasks] = args.as_slice() else {
        bail!("usage: billing_load URL DATA_DIR CALLS TASKS");
    };
    let calls: usize = calls.parse().context("CALLS")?;
    let tasks: usize = tasks.parse().context("TASKS")?;
    let secrets = Secrets::load_or_create(&std::path::Path::new(data_dir).join("secret.key"))?;
    let store = Store::open(url, Arc::new(secrets)).await?;
    let run = std::process::id();
    let tariff = format!("bench{run}");
    let rows = parse_csv(
        &tariff,
        "prefix,currency,price_per_minute,connection_fee,increments\n1,EUR,0.60,0.02,1/1\n",
    )
    .map_err(anyhow::Error::msg)?;
    store.replace_tariff(&tariff, &rows).await?;
    let logins: Vec<String> = (0..tasks * 4).map(|i| format!("b{run}x{i}")).collect();
    for login in &logins {
        store
            .add_account(&NewAccount {
                login: login.clone(),
                sip_password: "pw".into(),
                template: AccountTemplate {
                    tariff: tariff.clone(),
                    currency: "EUR".into(),
                    // 1,000,000.00: no call is ever refused for money.
                    balance_micro: 1_000_000_000_000,
                    ..Default::default()
                },
                ..Default::default()
            })
            .await?;
    }
    let billing = Billing::new(
        store.clone(),
        BillingConfig {
            max_call_secs: 600,
            ..Default::default()
        },
    );
    let logins = Arc::new(logins);
    let cdr = move |login: &str, i: usize| Cdr {
        call_id: format!("bench-{run}-{i}"),
        caller: login.to_owned(),
        callee: "12125550100".into(),
        gateway: Some("carrier".into()),
        started_at: 1_000,
        answered_at: Some(2_000),
        ended_at: 2_000 + i64::from(CALL_SECS) * 1_000,
        disposition: Disposition::Answered,
        code: 200,
        end_reason: Some("bye".into()),
        cost_micro: None,
    };

    // Each phase: `calls` operations spread over `tasks` tasks.
    let per_task = calls.div_ceil(tasks);
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let (store, logins) = (store.clone(), logins.clone());
        set.spawn(async move {
            for i in t * per_task..((t + 1) * per_task).min(calls) {
                store.insert_cdr(&cdr(&logins[i % logins.len()], i)).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let plain = calls as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let (billing, logins) = (billing.clone(), logins.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            for i in t * per_task..((t + 1) * per_task).min(calls) {
                let auth = billing
                    .authorize(&logins[i % logins.len()], "12125550100")
                    .await
                    .map_err(|r| anyhow::anyhow!("call {i} refused: {r}"))?;
                out.push((i, auth));
            }
            anyhow::Ok(out)
        });
    }
    let mut authorized: Vec<Vec<(usize, Authorization)>> = Vec::new();
    while let Some(r) = set.join_next().await {
        authorized.push(r??);
    }
    let authorize = calls as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for batch in authorized {
        let billing = billing.clone();
        set.spawn(async move {
            let mut cost = 0;
            for (i, auth) in batch {
                let record = cdr(&auth.login, calls + i);
                cost += billing
                    .settle_call(&auth, CALL_SECS, &record)
                    .await?
                    .cost_micro;
            }
            anyhow::Ok(cost)
        });
    }
    let mut cost = 0;
    while let Some(r) = set.join_next().await {
        cost += r??;
    }
    let settle = calls as f64 / started.elapsed().as_secs_f64();

    // 0.02 to connect and 0.01 a second.
    ensure!(
        cost == calls as i64 * (20_000 + i64::from(CALL_SECS) * 10_000),
        "charged {cost} micro in all"
    );
    let mut left = 0;
    for login in logins.iter() {
        let money = store.account_money(login).await?.context("account gone")?;
        ensure!(money.reserved_micro == 0, "{login} still holds {money:?}");
        ensure!(
            store.ledger_total(login).await? == money.balance_micro,
            "the ledger of {login} does not sum to its balance"
        );
        left += money.balance_micro;
    }
    ensure!(
        left + cost == logins.len() as i64 * 1_000_000_000_000,
        "money appeared or vanished"
    );
    println!(
        "{{\"calls\":{calls},\"tasks\":{tasks},\"plain_cdrs_per_s\":{plain:.0},\
         \"authorize_per_s\":{authorize:.0},\"rated_cdrs_per_s\":{settle:.0},\
         \"rated_over_plain\":{:.2}}}",
        settle / plain
    );
    Ok(())
}
