//! `softswitch tariff …`, `balance …`, `voucher …`, `fx …`, `plan …` and
//! `did-pool …`: tariffs from CSV files, balances and their ledger, voucher
//! batches, exchange rates, the plan catalogue, the numbers for sale. A
//! tariff or rate change reaches a running switch within
//! `billing.tariff_poll_secs`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use softswitch::app::App;
use softswitch::billing::dids::parse_pool_csv;
use softswitch::billing::fx::parse_rate;
use softswitch::billing::money::{self, format_in, parse_payment};
use softswitch::billing::plans::{Plan, SECONDS_MAX, validate_name};
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
    /// Credit AMOUNT (a decimal such as 10.00, in the account's currency
    /// unless --currency).
    Topup {
        login: String,
        amount: String,
        /// Why (a payment id, a note), kept in the ledger row.
        #[arg(long)]
        reference: Option<String>,
        /// ISO 4217 code of AMOUNT: another than the account's is credited
        /// at the exchange rate (`fx set`), rounded down.
        #[arg(long)]
        currency: Option<String>,
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

#[derive(Subcommand)]
pub enum FxCommand {
    /// The exchange rates: base, quote, what one base is worth in quote,
    /// when set (UTC). A pair converts both ways.
    List,
    /// One BASE is worth RATE of QUOTE (a decimal such as 1.0832, at most 9
    /// decimal places); replaces the pair set either way.
    Set {
        base: String,
        quote: String,
        rate: String,
    },
    /// Delete the rate between two currencies (set either way).
    Del { base: String, quote: String },
}

#[derive(Subcommand)]
pub enum PlanCommand {
    /// The catalogue: name, price, minutes, prefixes, validity, renewal,
    /// on sale or withdrawn.
    List,
    /// Create or replace plan NAME.
    Put {
        name: String,
        /// Per purchase and per renewal, a decimal such as 5.00.
        #[arg(long)]
        price: String,
        /// ISO 4217 code of the price.
        #[arg(long)]
        currency: String,
        /// Call minutes per period.
        #[arg(long)]
        minutes: u32,
        /// Digit prefixes the minutes cover (comma-separated); none: every number.
        #[arg(long, value_delimiter = ',')]
        prefixes: Vec<String>,
        /// Days a period lasts; 0: the minutes never expire.
        #[arg(long, default_value_t = 0)]
        validity_days: u32,
        /// Renewed at the end of each period while the balance pays.
        #[arg(long)]
        recurring: bool,
        /// Kept in the catalogue but not offered to users.
        #[arg(long)]
        not_for_sale: bool,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete plan NAME from the catalogue: the plans bought as it stop
    /// renewing and run to the end of their period (`put --not-for-sale`
    /// only hides it).
    Del { name: String },
}

#[derive(Subcommand)]
pub enum DidPoolCommand {
    /// Add the numbers of a CSV file to the pool (header names the columns:
    /// number, monthly_fee, currency required; country, description,
    /// setup_fee optional); numbers already there get the file's values.
    Import { file: PathBuf },
    /// The pool: number, country, currency, monthly fee, setup fee, holder
    /// (or "free"), paid until.
    List {
        /// ISO 3166 alpha-2 code, such as PL.
        #[arg(long)]
        country: Option<String>,
    },
    /// Remove a free NUMBER from the pool.
    Del { number: String },
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
            currency,
        } => {
            let Some(m) = app.store.account_money(&login).await? else {
                bail!("no account {login:?}");
            };
            let paid_in = match currency {
                Some(code) => iso(&code)?.to_owned(),
                None => m.currency.clone(),
            };
            let micro = parse_payment(&amount, &paid_in).map_err(anyhow::Error::msg)?;
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
                    Some(&paid_in),
                )
                .await
                .map_err(money_error)?;
            let c = entry.currency.as_str();
            println!(
                "{login}: +{} {c}, balance {} {c}",
                format_in(entry.amount_micro, c),
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

fn money_error(e: BillingError) -> anyhow::Error {
    match e {
        BillingError::Store(e) => anyhow::Error::new(e),
        other => anyhow::anyhow!("{other}"),
    }
}

/// The ISO 4217 code `code` names, upper case.
fn iso(code: &str) -> anyhow::Result<&'static str> {
    match money::currency(code) {
        Some(c) => Ok(c.code),
        None => bail!("{code:?} is not an ISO 4217 currency code such as EUR"),
    }
}

pub async fn fx(app: App, cmd: FxCommand) -> anyhow::Result<()> {
    match cmd {
        FxCommand::List => {
            for r in app.store.exchange_rates().await? {
                println!("{}\t{}\t{}\t{}", r.base, r.quote, r.rate, utc(r.updated_at));
            }
        }
        FxCommand::Set { base, quote, rate } => {
            let nano = parse_rate(&rate).map_err(anyhow::Error::msg)?;
            let set = app
                .store
                .set_exchange_rate(iso(&base)?, iso(&quote)?, nano)
                .await?;
            println!("1 {} = {} {}", set.base, set.rate, set.quote);
        }
        FxCommand::Del { base, quote } => {
            let (base, quote) = (iso(&base)?, iso(&quote)?);
            if !app.store.delete_exchange_rate(base, quote).await? {
                bail!("no exchange rate between {base} and {quote}");
            }
            println!("rate {base}/{quote} deleted");
        }
    }
    Ok(())
}

pub async fn plan(app: App, cmd: PlanCommand) -> anyhow::Result<()> {
    match cmd {
        PlanCommand::List => {
            for p in app.store.plans().await? {
                println!(
                    "{}\t{} {}\t{} min\t{}\t{}\t{}\t{}",
                    p.name,
                    format_in(p.price_micro, &p.currency),
                    p.currency,
                    p.seconds / 60,
                    if p.prefixes.is_empty() {
                        "all numbers".to_owned()
                    } else {
                        p.prefixes.join(",")
                    },
                    match p.validity_days {
                        0 => "no expiry".to_owned(),
                        d => format!("{d} days"),
                    },
                    if p.recurring { "recurring" } else { "once" },
                    if p.for_sale { "on sale" } else { "withdrawn" },
                );
            }
        }
        PlanCommand::Put {
            name,
            price,
            currency,
            minutes,
            prefixes,
            validity_days,
            recurring,
            not_for_sale,
            description,
        } => {
            validate_name(&name).map_err(anyhow::Error::msg)?;
            let currency = iso(&currency)?;
            let price_micro = parse_payment(&price, currency).map_err(anyhow::Error::msg)?;
            if minutes == 0 || minutes > SECONDS_MAX / 60 {
                bail!("--minutes: 1 to {}", SECONDS_MAX / 60);
            }
            let plan = Plan {
                name,
                description,
                price_micro,
                currency: currency.to_owned(),
                seconds: minutes * 60,
                prefixes,
                validity_days,
                recurring,
                for_sale: !not_for_sale,
                created_at: softswitch::store::now_secs(),
            };
            let created = app.store.put_plan(&plan).await?;
            println!(
                "plan {} {}: {} {currency}, {minutes} min",
                plan.name,
                if created { "created" } else { "replaced" },
                format_in(price_micro, currency)
            );
        }
        PlanCommand::Del { name } => {
            if !app.store.delete_plan(&name).await? {
                bail!("no plan {name:?}");
            }
            println!("plan {name} deleted");
        }
    }
    Ok(())
}

pub async fn did_pool(app: App, cmd: DidPoolCommand) -> anyhow::Result<()> {
    match cmd {
        DidPoolCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let rows =
                parse_pool_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            if rows.is_empty() {
                bail!("{}: no numbers", file.display());
            }
            let done = app
                .store
                .import_did_pool(&rows)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "{} numbers: {} added, {} updated",
                rows.len(),
                done.added,
                done.updated
            );
        }
        DidPoolCommand::List { country } => {
            let country = country.map(|c| c.to_ascii_uppercase());
            for n in app.store.did_pool(country.as_deref()).await? {
                println!(
                    "+{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    n.number,
                    n.country.as_deref().unwrap_or("-"),
                    n.currency,
                    format_in(n.monthly_fee_micro, &n.currency),
                    format_in(n.setup_fee_micro, &n.currency),
                    n.login.as_deref().unwrap_or("free"),
                    n.paid_until.map_or_else(|| "-".to_owned(), utc),
                );
            }
        }
        DidPoolCommand::Del { number } => {
            let digits = softswitch::billing::number_digits(&number)
                .with_context(|| format!("{number:?} is not a phone number"))?;
            if !app
                .store
                .remove_pool_number(&digits)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                bail!("number +{digits} is not in the pool");
            }
            println!("number +{digits} removed from the pool");
        }
    }
    Ok(())
}
