//! DID pool administration: importing numbers for sale (CSV), listing the
//! pool with who holds what, taking a free number out. See
//! [`crate::billing::dids`] for ordering and renewal.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AdminState;
use crate::api::dids::did_error;
use crate::api::error::{ApiError, ApiQuery};
use crate::billing::dids::parse_pool_csv;
use crate::billing::money::format_in;
use crate::billing::number_digits;
use crate::store::did_pool::{DidError, PoolNumber};

/// Largest pool file: 100,000 numbers of ~60 bytes with room to spare.
pub const POOL_MAX_BYTES: usize = 16 << 20;

fn bad_pool(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid-did-pool", message)
}

/// `POST /did-pool` answer.
#[derive(Serialize)]
pub struct Imported {
    /// Rows in the file.
    pub rows: usize,
    pub added: usize,
    /// Numbers already in the pool, given the file's values.
    pub updated: usize,
}

/// `POST /did-pool`: the CSV body's numbers join the pool (see
/// [`parse_pool_csv`]); numbers already there get its values.
pub async fn import(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Json<Imported>, ApiError> {
    let text =
        std::str::from_utf8(&body).map_err(|_| bad_pool("the CSV file is not UTF-8".into()))?;
    let rows = parse_pool_csv(text).map_err(bad_pool)?;
    if rows.is_empty() {
        return Err(bad_pool("the file has no numbers".into()));
    }
    let done = state
        .store
        .import_did_pool(&rows)
        .await
        .map_err(|e| match e {
            DidError::Invalid(m) => bad_pool(m),
            other => did_error(other),
        })?;
    tracing::info!(action = "did-pool.import", rows = rows.len(), added = done.added, updated = done.updated, %peer, "admin action");
    Ok(Json(Imported {
        rows: rows.len(),
        added: done.added,
        updated: done.updated,
    }))
}

/// A pool number as the admin sees it.
#[derive(Serialize)]
pub struct PoolView {
    pub number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    pub description: String,
    pub currency: String,
    pub monthly_fee: String,
    pub monthly_fee_micro: i64,
    pub setup_fee: String,
    pub setup_fee_micro: i64,
    /// The holder; absent: free.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordered_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paid_until: Option<i64>,
    pub created_at: i64,
}

impl From<PoolNumber> for PoolView {
    fn from(d: PoolNumber) -> Self {
        let held = d.login.is_some();
        PoolView {
            monthly_fee: format_in(d.monthly_fee_micro, &d.currency),
            setup_fee: format_in(d.setup_fee_micro, &d.currency),
            number: d.number,
            country: d.country,
            description: d.description,
            currency: d.currency,
            monthly_fee_micro: d.monthly_fee_micro,
            setup_fee_micro: d.setup_fee_micro,
            login: d.login,
            ordered_at: d.ordered_at.filter(|_| held),
            paid_until: d.paid_until.filter(|_| held),
            created_at: d.created_at,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolQuery {
    /// ISO 3166-1 alpha-2.
    #[serde(default)]
    pub country: Option<String>,
}

/// `GET /did-pool?country=PL`.
pub async fn list(
    State(state): State<Arc<AdminState>>,
    ApiQuery(q): ApiQuery<PoolQuery>,
) -> Result<Json<Vec<PoolView>>, ApiError> {
    let country = q.country.map(|c| c.to_ascii_uppercase());
    let rows = state.store.did_pool(country.as_deref()).await?;
    Ok(Json(rows.into_iter().map(PoolView::from).collect()))
}

/// `DELETE /did-pool/{number}`: only a free number (409 `did-held`
/// otherwise; the holder releases it, or the renewal when unpaid).
pub async fn remove(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(number): Path<String>,
) -> Result<StatusCode, ApiError> {
    let number = number_digits(&number).ok_or_else(|| ApiError::not_found("pool number"))?;
    if !state
        .store
        .remove_pool_number(&number)
        .await
        .map_err(did_error)?
    {
        return Err(ApiError::not_found("pool number"));
    }
    tracing::info!(action = "did-pool.delete", %number, %peer, "admin action");
    Ok(StatusCode::NO_CONTENT)
}
