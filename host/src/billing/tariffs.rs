//! Tariffs: named tables of rates by prefix of the dialled number, their
//! CSV form, and the in-memory copy that answers longest-prefix look-ups.
//!
//! The copy is built from the whole `tariff_rates` table and replaced as a
//! whole (an `ArcSwap` in [`super::Billing`]) when the `tariff_version`
//! row moved: readers never lock, and a node sees a change made by another
//! node or the CLI within `billing.tariff_poll_secs`.
//!
//! A look-up hashes the number's prefixes, longest first, but only at the
//! lengths some prefix of that tariff has (a real tariff has 5 to 10
//! distinct lengths): a few hash probes, well under a microsecond on 50,000
//! rows (`cargo bench -p softswitch --bench tariffs`).

use std::collections::HashMap;

use serde::Serialize;

use super::money::{self, format_in, parse_micro};
use super::rating::Rate;

/// Longest prefix, digits (the store's limit for prefixes).
pub const PREFIX_MAX: usize = 32;
/// Longest description.
pub const DESCRIPTION_MAX: usize = 255;
/// Longest tariff name (as `accounts.tariff`).
pub const NAME_MAX: usize = 64;
/// Highest price per minute, per message or connection fee: 10,000 units.
/// Anything above is a typo in a price list.
pub const PRICE_MAX_MICRO: i64 = 10_000 * money::MICRO;
/// Longest increment or free time, seconds (an hour).
pub const SECONDS_MAX: u32 = 3600;

/// One row of a tariff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TariffRate {
    pub tariff: String,
    /// Digits of the dialled number (E.164 without `+`) this row prices.
    pub prefix: String,
    pub description: String,
    /// ISO 3166-1 alpha-2, upper case; rows without one are not listed by
    /// country (they still price calls).
    pub country: Option<String>,
    /// ISO 4217, the same on every row of a tariff.
    pub currency: String,
    #[serde(flatten)]
    pub rate: Rate,
    /// Price of one message; `None`: messages to this prefix are not sold.
    pub sms_price_micro: Option<i64>,
}

/// Checks a tariff name.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > NAME_MAX || name.chars().any(|c| c.is_control()) {
        return Err(format!(
            "tariff name {name:?}: 1 to {NAME_MAX} characters, no control characters"
        ));
    }
    Ok(())
}

/// Checks a prefix: 1 to 32 digits.
pub fn validate_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.len() > PREFIX_MAX || !prefix.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("prefix {prefix:?}: 1 to {PREFIX_MAX} digits"));
    }
    Ok(())
}

impl TariffRate {
    /// Checks every field (what an import or the store refuses).
    pub fn validate(&self) -> Result<(), String> {
        validate_name(&self.tariff)?;
        validate_prefix(&self.prefix)?;
        if self.description.chars().count() > DESCRIPTION_MAX
            || self.description.chars().any(char::is_control)
        {
            return Err(format!(
                "prefix {}: the description has over {DESCRIPTION_MAX} characters or control characters",
                self.prefix
            ));
        }
        if let Some(c) = &self.country
            && (c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(format!(
                "prefix {}: country {c:?} is not an ISO 3166 alpha-2 code such as PL",
                self.prefix
            ));
        }
        if money::currency(&self.currency).map(|c| c.code) != Some(self.currency.as_str()) {
            return Err(format!(
                "prefix {}: currency {:?} is not an ISO 4217 code such as EUR",
                self.prefix, self.currency
            ));
        }
        let r = &self.rate;
        for (what, v) in [
            ("price per minute", Some(r.price_micro)),
            ("connection fee", Some(r.connection_fee_micro)),
            ("SMS price", self.sms_price_micro),
        ] {
            if let Some(v) = v
                && !(0..=PRICE_MAX_MICRO).contains(&v)
            {
                return Err(format!(
                    "prefix {}: the {what} must be 0 to {}",
                    self.prefix,
                    money::format_micro(PRICE_MAX_MICRO, 0)
                ));
            }
        }
        if !(1..=SECONDS_MAX).contains(&r.first_increment)
            || !(1..=SECONDS_MAX).contains(&r.next_increment)
            || r.free_seconds > SECONDS_MAX
        {
            return Err(format!(
                "prefix {}: increments are 1 to {SECONDS_MAX} seconds, free seconds 0 to {SECONDS_MAX}",
                self.prefix
            ));
        }
        Ok(())
    }
}

/// The columns of a tariff CSV file, in the order `tariff list` prints them.
pub const CSV_HEADER: &str = "prefix,description,country,currency,price_per_minute,connection_fee,increments,free_seconds,sms_price";

/// Splits one CSV line into fields (RFC 4180: fields in double quotes may
/// hold commas, and `""` is a quote).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            }
            '"' if at_start => {
                quoted = true;
                at_start = false;
            }
            ',' if !quoted => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
            }
            c => {
                field.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    fields.push(field);
    Ok(fields.into_iter().map(|f| f.trim().to_owned()).collect())
}

/// The records of a CSV file whose first line names its columns, in any
/// order: every name one of `header`'s, none twice, each of `required`
/// present; blank lines and `#` comments skipped; every record as many
/// fields as the header. Errors name the line.
pub(crate) struct CsvTable {
    columns: Vec<String>,
    /// (line number from 1, fields)
    records: Vec<(usize, Vec<String>)>,
}

/// One record of a [`CsvTable`].
pub(crate) struct CsvRecord<'a> {
    pub line: usize,
    columns: &'a [String],
    fields: &'a [String],
}

impl CsvTable {
    pub(crate) fn parse(text: &str, header: &str, required: &[&str]) -> Result<CsvTable, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        let Some((_, first)) = lines.next() else {
            return Err(format!("no header line: expected {header}"));
        };
        let columns: Vec<String> = csv_fields(first)?
            .into_iter()
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let known: Vec<&str> = header.split(',').collect();
        for (i, c) in columns.iter().enumerate() {
            if !known.contains(&c.as_str()) {
                return Err(format!("unknown column {c:?}: the columns are {header}"));
            }
            if columns[..i].contains(c) {
                return Err(format!("column {c:?} is given twice"));
            }
        }
        for r in required {
            if !columns.iter().any(|c| c == r) {
                return Err(format!("column {r:?} is missing: expected {header}"));
            }
        }
        let mut records = Vec::new();
        for (n, line) in lines {
            let at = |e: String| format!("line {}: {e}", n + 1);
            let fields = csv_fields(line).map_err(at)?;
            if fields.len() != columns.len() {
                return Err(at(format!(
                    "{} fields where the header has {}",
                    fields.len(),
                    columns.len()
                )));
            }
            records.push((n + 1, fields));
        }
        Ok(CsvTable { columns, records })
    }

    pub(crate) fn records(&self) -> impl Iterator<Item = CsvRecord<'_>> {
        self.records.iter().map(|(line, fields)| CsvRecord {
            line: *line,
            columns: &self.columns,
            fields,
        })
    }
}

impl CsvRecord<'_> {
    /// The field of `column`; empty when the file has no such column.
    pub(crate) fn get(&self, column: &str) -> &str {
        self.columns
            .iter()
            .position(|c| c == column)
            .map_or("", |i| self.fields[i].as_str())
    }

    /// `e`, naming this record's line.
    pub(crate) fn at(&self, e: impl std::fmt::Display) -> String {
        format!("line {}: {e}", self.line)
    }
}

/// Quotes a CSV field when it needs it.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) || value != value.trim() {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// `"60/60"`, `"1/1"`, `"30/6"` (first/next seconds), or `"60"` for 60/60.
pub fn parse_increments(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("increments {text:?}: say first/next seconds, such as 60/60 or 30/6");
    let (first, next) = text.split_once('/').unwrap_or((text, text));
    let first = first.trim().parse::<u32>().map_err(|_| bad())?;
    let next = next.trim().parse::<u32>().map_err(|_| bad())?;
    Ok((first, next))
}

/// Parses a tariff CSV file for tariff `name`. The first line names the
/// columns (any order): `prefix`, `currency` and `price_per_minute` are
/// required; `description`, `country`, `connection_fee` (0),
/// `increments` (60/60), `free_seconds` (0) and `sms_price` (none) are
/// optional. Prices are decimal strings (`0.0123`), read exactly. A
/// prefix given twice, an unknown column, a bad value: an error naming the
/// line, and nothing is imported.
pub fn parse_csv(name: &str, text: &str) -> Result<Vec<TariffRate>, String> {
    validate_name(name)?;
    let table = CsvTable::parse(
        text,
        CSV_HEADER,
        &["prefix", "currency", "price_per_minute"],
    )?;
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut currency: Option<String> = None;
    for record in table.records() {
        let at = |e: String| record.at(e);
        let get = |c: &str| record.get(c);
        let price = |c: &str| -> Result<i64, String> {
            parse_micro(get(c), 6).map_err(|e| format!("{c}: {e}"))
        };
        let (first, next) = match get("increments") {
            "" => (60, 60),
            s => parse_increments(s).map_err(at)?,
        };
        let free_seconds = match get("free_seconds") {
            "" => 0,
            s => s
                .parse::<u32>()
                .map_err(|_| format!("free_seconds {s:?} is not a number of seconds"))
                .map_err(at)?,
        };
        let row = TariffRate {
            tariff: name.to_owned(),
            prefix: get("prefix").trim_start_matches('+').to_owned(),
            description: get("description").to_owned(),
            country: Some(get("country").to_ascii_uppercase()).filter(|c| !c.is_empty()),
            currency: get("currency").to_ascii_uppercase(),
            rate: Rate {
                price_micro: price("price_per_minute").map_err(at)?,
                connection_fee_micro: match get("connection_fee") {
                    "" => 0,
                    _ => price("connection_fee").map_err(at)?,
                },
                first_increment: first,
                next_increment: next,
                free_seconds,
            },
            sms_price_micro: match get("sms_price") {
                "" => None,
                _ => Some(price("sms_price").map_err(at)?),
            },
        };
        row.validate().map_err(at)?;
        match &currency {
            None => currency = Some(row.currency.clone()),
            Some(c) if *c != row.currency => {
                return Err(at(format!(
                    "currency {} differs from {c} above: one tariff has one currency",
                    row.currency
                )));
            }
            Some(_) => {}
        }
        if !seen.insert(row.prefix.clone()) {
            return Err(at(format!("prefix {} is given twice", row.prefix)));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Rows as a CSV file that [`parse_csv`] reads back.
pub fn to_csv(rows: &[TariffRate]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let fields = [
            r.prefix.clone(),
            csv_field(&r.description),
            r.country.clone().unwrap_or_default(),
            r.currency.clone(),
            money::format_micro(r.rate.price_micro, 2),
            money::format_micro(r.rate.connection_fee_micro, 2),
            format!("{}/{}", r.rate.first_increment, r.rate.next_increment),
            r.rate.free_seconds.to_string(),
            r.sms_price_micro
                .map(|p| money::format_micro(p, 2))
                .unwrap_or_default(),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// One tariff in memory.
#[derive(Debug, Default)]
pub struct Tariff {
    rows: Vec<TariffRate>,
    by_prefix: HashMap<Box<str>, u32>,
    /// The prefix lengths present, longest first.
    lengths: Vec<usize>,
    /// Rows carrying a country, by country, ordered by prefix.
    by_country: HashMap<String, Vec<u32>>,
}

impl Tariff {
    fn build(mut rows: Vec<TariffRate>) -> Tariff {
        rows.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        let mut t = Tariff {
            by_prefix: HashMap::with_capacity(rows.len()),
            ..Default::default()
        };
        for (i, r) in rows.iter().enumerate() {
            let i = i as u32;
            t.by_prefix.insert(r.prefix.as_str().into(), i);
            if !t.lengths.contains(&r.prefix.len()) {
                t.lengths.push(r.prefix.len());
            }
            if let Some(c) = &r.country {
                t.by_country.entry(c.clone()).or_default().push(i);
            }
        }
        t.lengths.sort_unstable_by(|a, b| b.cmp(a));
        t.rows = rows;
        t
    }

    /// The row with the longest prefix of `number` (digits), if any.
    pub fn lookup(&self, number: &str) -> Option<&TariffRate> {
        for &len in &self.lengths {
            if len <= number.len()
                && let Some(&i) = number.get(..len).and_then(|p| self.by_prefix.get(p))
            {
                return Some(&self.rows[i as usize]);
            }
        }
        None
    }

    /// The rows of `country` (ISO alpha-2, any case), by prefix.
    pub fn by_country(&self, country: &str) -> Vec<&TariffRate> {
        self.by_country
            .get(&country.to_ascii_uppercase())
            .map(|ix| ix.iter().map(|&i| &self.rows[i as usize]).collect())
            .unwrap_or_default()
    }

    /// Every row, by prefix.
    pub fn rows(&self) -> &[TariffRate] {
        &self.rows
    }

    /// The tariff's currency (every row has the same).
    pub fn currency(&self) -> Option<&str> {
        self.rows.first().map(|r| r.currency.as_str())
    }
}

/// Every tariff in memory, as loaded at one tariff version.
#[derive(Debug, Default)]
pub struct TariffSet {
    /// The `tariff_version` this was loaded at; -1 before the first load.
    pub version: i64,
    tariffs: HashMap<String, Tariff>,
}

impl TariffSet {
    /// Builds the set from every row of every tariff.
    pub fn build(version: i64, rows: Vec<TariffRate>) -> TariffSet {
        let mut grouped: HashMap<String, Vec<TariffRate>> = HashMap::new();
        for r in rows {
            grouped.entry(r.tariff.clone()).or_default().push(r);
        }
        TariffSet {
            version,
            tariffs: grouped
                .into_iter()
                .map(|(name, rows)| (name, Tariff::build(rows)))
                .collect(),
        }
    }

    /// An empty set that has never been loaded.
    pub fn unloaded() -> TariffSet {
        TariffSet {
            version: -1,
            tariffs: HashMap::new(),
        }
    }

    pub fn tariff(&self, name: &str) -> Option<&Tariff> {
        self.tariffs.get(name)
    }

    /// The row of tariff `name` with the longest prefix of `number`.
    pub fn lookup(&self, name: &str, number: &str) -> Option<&TariffRate> {
        self.tariffs.get(name)?.lookup(number)
    }

    /// Number of rows over all tariffs.
    pub fn len(&self) -> usize {
        self.tariffs.values().map(|t| t.rows.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A rate as clients see it: decimal strings in the tariff's currency,
/// with the micro amounts beside them.
#[derive(Debug, Clone, Serialize)]
pub struct RateView {
    pub prefix: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    pub currency: String,
    pub price_per_minute: String,
    pub price_per_minute_micro: i64,
    pub connection_fee: String,
    pub connection_fee_micro: i64,
    /// `first/next` seconds, e.g. `30/6`.
    pub increments: String,
    pub free_seconds: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms_price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms_price_micro: Option<i64>,
}

impl From<&TariffRate> for RateView {
    fn from(r: &TariffRate) -> Self {
        let money = |m: i64| format_in(m, &r.currency);
        RateView {
            prefix: r.prefix.clone(),
            description: r.description.clone(),
            country: r.country.clone(),
            currency: r.currency.clone(),
            price_per_minute: money(r.rate.price_micro),
            price_per_minute_micro: r.rate.price_micro,
            connection_fee: money(r.rate.connection_fee_micro),
            connection_fee_micro: r.rate.connection_fee_micro,
            increments: format!("{}/{}", r.rate.first_increment, r.rate.next_increment),
            free_seconds: r.rate.free_seconds,
            sms_price: r.sms_price_micro.map(money),
            sms_price_micro: r.sms_price_micro,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "\u{feff}prefix,description,country,currency,price_per_minute,connection_fee,increments,free_seconds\n\
        # comment lines and blank lines are skipped\n\
        \n\
        48,Poland,PL,EUR,0.0123,0,60/60,0\n\
        48600,\"Poland, mobile \"\"Plus\"\"\",PL,EUR,0.05,0.01,30/6,5\n\
        4822,Poland Warsaw,,eur,0.02,,1/1,\n\
        1,USA and Canada,us,EUR,0.009,0,60,0\n";

    #[test]
    fn a_csv_file_parses_exactly_and_round_trips() {
        let rows = parse_csv("std", CSV).unwrap();
        assert_eq!(rows.len(), 4);
        let mobile = &rows[1];
        assert_eq!(mobile.description, "Poland, mobile \"Plus\"");
        assert_eq!(mobile.rate.price_micro, 50_000);
        assert_eq!(mobile.rate.connection_fee_micro, 10_000);
        assert_eq!(
            (mobile.rate.first_increment, mobile.rate.next_increment),
            (30, 6)
        );
        assert_eq!(mobile.rate.free_seconds, 5);
        assert_eq!(rows[0].rate.price_micro, 12_300);
        assert_eq!(rows[2].country, None);
        assert_eq!(rows[2].currency, "EUR");
        assert_eq!(rows[3].country.as_deref(), Some("US"));
        assert_eq!(
            (rows[3].rate.first_increment, rows[3].rate.next_increment),
            (60, 60)
        );
        assert_eq!(parse_csv("std", &to_csv(&rows)).unwrap(), rows);
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        let head = "prefix,currency,price_per_minute\n";
        for (body, want) in [
            (
                "48,EUR,0.1\n48,EUR,0.2\n",
                "line 3: prefix 48 is given twice",
            ),
            ("48,XXX,0.1\n", "line 2: prefix 48: currency"),
            ("48,EUR,0.1\n49,USD,0.1\n", "line 3: currency USD differs"),
            ("4a,EUR,0.1\n", "line 2: prefix \"4a\""),
            ("48,EUR,-0.1\n", "line 2: prefix 48: the price per minute"),
            ("48,EUR,0.12345678\n", "line 2: price_per_minute"),
            ("48,EUR,1e-3\n", "line 2: price_per_minute"),
            ("48,EUR\n", "line 2: 2 fields"),
            ("48,EUR,\"0.1\n", "line 2: a quoted field"),
        ] {
            let err = parse_csv("t", &format!("{head}{body}")).unwrap_err();
            assert!(err.starts_with(want), "{body:?}: {err}");
        }
        assert!(
            parse_csv("t", "prefix,price\n")
                .unwrap_err()
                .contains("unknown column")
        );
        assert!(
            parse_csv("t", "prefix,price_per_minute\n")
                .unwrap_err()
                .contains("currency")
        );
        assert!(parse_csv("t", "").is_err());
        assert!(parse_csv("", head).is_err(), "tariff name");
        let increments = head.replace('\n', ",increments\n") + "48,EUR,0.1,0/60\n";
        assert!(
            parse_csv("t", &increments)
                .unwrap_err()
                .contains("increments")
        );
    }

    #[test]
    fn longest_prefix_wins_and_countries_list_only_rows_with_one() {
        let set = TariffSet::build(7, parse_csv("std", CSV).unwrap());
        let std = set.tariff("std").unwrap();
        assert_eq!(set.lookup("std", "48600123456").unwrap().prefix, "48600");
        assert_eq!(set.lookup("std", "48221234567").unwrap().prefix, "4822");
        assert_eq!(set.lookup("std", "48700").unwrap().prefix, "48");
        assert_eq!(set.lookup("std", "12125551234").unwrap().prefix, "1");
        assert!(set.lookup("std", "44").is_none());
        assert!(
            set.lookup("std", "4").is_none(),
            "shorter than every prefix"
        );
        assert!(set.lookup("other", "48").is_none());
        let pl: Vec<_> = std
            .by_country("pl")
            .iter()
            .map(|r| r.prefix.clone())
            .collect();
        assert_eq!(pl, ["48", "48600"], "4822 has no country");
        assert_eq!(std.currency(), Some("EUR"));
        assert_eq!(set.len(), 4);
        let view = RateView::from(set.lookup("std", "486001").unwrap());
        assert_eq!(view.price_per_minute, "0.05");
        assert_eq!(view.connection_fee, "0.01");
        assert_eq!(view.increments, "30/6");
    }
}
