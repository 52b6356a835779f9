//! `softswitch tariff …`, `balance …` and `voucher …`: tariffs from CSV
//! files, balances and their ledger, voucher batches. A tariff change
//! reaches a running switch within `billing.tariff_poll_secs`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use softswitch::app::App;
use softswitch::billing::money::{self, format_in, parse_payment};
use softswitch::billing::tariffs::{parse_csv, to_csv};
use softswitch::billing::{BillingError, LedgerKind, Movement};

#[derive(Subcommand)]
pub enum TariffCommand {
    /// Import tariff NAME from a CSV file (header: prefix,description,country,
    /// currency,price_per_minute,connection_fee,increments,free_seconds[,sms_price];
    /// prices as decimals such as 0.0123, increments such as 60/60 or 30/6).
    /// The file becomes the whole tariff unless --merge.
    Import {
        name: String,
        file: PathBuf,
        /// Add the file's rows, replacing rows of the same prefixes, and
        /// keep the others.
        #[arg(long)]
        merge: bool,
    },
    /// Without NAME: the tariffs (name, currency, rows). With NAME: its
    /// rows as CSV, the format import reads.
    List { name: Option<String> },
    /// Delete the row of PREFIX from tariff NAME.
    Del { name: String, prefix: String },
}

#[derive(Subcommand)]
pub enum BalanceCommand {
    /// The balance, what calls in progress reserved, and the last ledger rows.
    Show { login: String },
    /// Credit AMOUNT (a decimal in the account's currency, such as 10.00).
    Topup {
        login: String,
        amount: String,
        /// Why (a payment id, a note), kept in the ledger row.
        #[arg(long)]
        reference: Option<String>,
    },
    /// The ledger, newest first: id, time (UTC), kind, amount, balance after, reference.
    Ledger {
        login: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Subcommand)]
pub enum VoucherCommand {
    /// Create a batch of vouchers and print their PINs, one a line (shown
    /// this once: only a keyed hash of each is stored).
    Create {
        /// 1 to 10,000.
        #[arg(long)]
        count: u32,
        /// Value of each, a decimal such as 5.00.
        #[arg(long)]
        value: String,
        /// ISO 4217 currency code.
        #[arg(long)]
        currency: String,
        /// Days until they expire (billing.voucher_days by default).
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// How many of a batch were redeemed.
    Batch { batch: String },
}

pub async fn tariff(app: App, cmd: TariffCommand) -> anyhow::Result<()> {
    match cmd {
        TariffCommand::Import { name, file, merge } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let rows =
                parse_csv(&name, &text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            if rows.is_empty() {
                bail!("{}: no rows", file.display());
            }
            let n = if merge {
                app.store.merge_tariff(&name, &rows).await
            } else {
                app.store.replace_tariff(&name, &rows).await
            }
            .with_context(|| format!("cannot import tariff {name:?}"))?;
            println!("tariff {name}: {n} rates imported");
        }
        TariffCommand::List { name: None } => {
            for t in app.store.tariffs().await? {
                println!("{}\t{}\t{} rates", t.name, t.currency, t.rows);
            }
        }
        TariffCommand::List { name: Some(name) } => {
            let rows = app.store.tariff_rates(&name).await?;
            if rows.is_empty() {
                bail!("no tariff {name:?}");
            }
            print!("{}", to_csv(&rows));
        }
        TariffCommand::Del { name, prefix } => {
            if !app.store.delete_tariff_rate(&name, &prefix).await? {
                bail!("no rate for prefix {prefix:?} in tariff {name:?}");
            }
            println!("tariff {name}: prefix {prefix} deleted");
        }
    }
    Ok(())
}

fn utc(secs: i64) -> String {
    softswitch::utc::format_ms(secs.saturating_mul(1000))
}

pub async fn balance(app: App, cmd: BalanceCommand) -> anyhow::Result<()> {
    match cmd {
        BalanceCommand::Show { login } => {
            let Some(m) = app.store.account_money(&login).await? else {
                bail!("no account {login:?}");
            };
            let c = m.currency.as_str();
            println!("login: {}", m.login);
            println!("balance: {} {c}", format_in(m.balance_micro, c));
            println!("reserved: {} {c}", format_in(m.reserved_micro, c));
            println!("available: {} {c}", format_in(m.available_micro(), c));
            println!("tariff: {}", m.tariff);
        }
        BalanceCommand::Topup {
            login,
            amount,
            reference,
        } => {
            let Some(m) = app.store.account_money(&login).await? else {
                bail!("no account {login:?}");
            };
            let micro = parse_payment(&amount, &m.currency).map_err(anyhow::Error::msg)?;
            let entry = app
                .store
                .credit(
                    &Movement {
                        login: &login,
                        kind: LedgerKind::Topup,
                        amount_micro: micro,
                        reference: reference.as_deref(),
                        actor: Some("cli"),
                    },
                    Some(&m.currency),
                )
                .await
                .map_err(|e| match e {
                    BillingError::Store(e) => anyhow::Error::new(e),
                    other => anyhow::anyhow!("{other}"),
                })?;
            let c = entry.currency.as_str();
            println!(
                "{login}: +{} {c}, balance {} {c}",
                format_in(micro, c),
                format_in(entry.balance_after_micro, c)
            );
        }
        BalanceCommand::Ledger { login, limit } => {
            if app.store.account_money(&login).await?.is_none() {
                bail!("no account {login:?}");
            }
            for e in app
                .store
                .ledger(&login, None, limit.clamp(1, 10_000))
                .await?
            {
                let c = e.currency.as_str();
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    e.id,
                    utc(e.created_at),
                    e.kind,
                    format_in(e.amount_micro, c),
                    format_in(e.balance_after_micro, c),
                    e.reference.as_deref().unwrap_or("-"),
                );
            }
        }
    }
    Ok(())
}

pub async fn voucher(app: App, cmd: VoucherCommand) -> anyhow::Result<()> {
    match cmd {
        VoucherCommand::Create {
            count,
            value,
            currency,
            expires_days,
        } => {
            let Some(currency) = money::currency(&currency) else {
                bail!("{currency:?} is not an ISO 4217 currency code such as EUR");
            };
            let micro = parse_payment(&value, currency.code).map_err(anyhow::Error::msg)?;
            let made = app
                .billing()
                .create_vouchers(count, micro, currency.code, expires_days)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "batch {}: {} vouchers of {} {}, valid until {}",
                made.batch,
                made.pins.len(),
                format_in(micro, &made.currency),
                made.currency,
                utc(made.expires_at)
            );
            for pin in made.pins {
                println!("{pin}");
            }
        }
        VoucherCommand::Batch { batch } => {
            let Some(b) = app.store.voucher_batch(&batch).await? else {
                bail!("no voucher batch {batch:?}");
            };
            println!(
                "batch {}: {} of {} redeemed, {} {} each, expires {}",
                b.batch,
                b.redeemed,
                b.count,
                format_in(b.value_micro, &b.currency),
                b.currency,
                utc(b.expires_at)
            );
        }
    }
    Ok(())
}
