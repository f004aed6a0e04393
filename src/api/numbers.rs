//! `/v1/numbers`: register, list, get, patch, delete the E.164 lines this deployment answers.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::agents::Deleted;
use super::{parse_body, ApiError, AppState, Page, Pagination};
use crate::agent::is_e164;
use crate::store::{NumberPatch, PhoneNumber};

/// A number as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NumberOut {
    pub id: String,
    pub phone_number: String,
    pub country: Option<String>,
    pub status: String,
    pub agent_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    #[serde(rename = "type")]
    pub number_type: String,
}

impl From<PhoneNumber> for NumberOut {
    fn from(n: PhoneNumber) -> Self {
        Self {
            id: n.id,
            phone_number: n.phone_number,
            country: n.country,
            status: n.status,
            agent_id: n.agent_id,
            created_at: crate::store::fmt_time(n.created_at),
            number_type: n.number_type,
        }
    }
}

/// `POST /v1/numbers` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NumberCreate {
    /// E.164: `+` then 8–15 digits.
    pub phone_number: String,
    /// Attach to this agent right away.
    pub agent_id: Option<String>,
    /// ISO 3166-1 alpha-2; derived from the calling code when absent and unambiguous.
    pub country: Option<String>,
}

/// `PATCH /v1/numbers/{id}` body: absent = unchanged; `null` clears `agentId` / `country`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NumberUpdate {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub phone_number: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub agent_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub country: Option<Option<String>>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn check_phone(v: &str) -> Result<(), ApiError> {
    if is_e164(v) {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(format!(
            "phoneNumber: '{v}' is not an E.164 number ('+' then 8–15 digits)"
        )))
    }
}

fn check_country(v: &str) -> Result<String, ApiError> {
    if v.len() == 2 && v.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(v.to_ascii_uppercase())
    } else {
        Err(ApiError::Unprocessable(format!("country: '{v}' is not a two-letter ISO 3166 country code")))
    }
}

/// Country of a number from its calling code, where the code names one country (or, for +1,
/// where the NANP default of the AgentPhone API applies).
fn country_of(e164: &str) -> Option<&'static str> {
    const CODES: &[(&str, &str)] = &[
        ("+1", "US"),
        ("+7", "RU"),
        ("+20", "EG"),
        ("+27", "ZA"),
        ("+30", "GR"),
        ("+31", "NL"),
        ("+32", "BE"),
        ("+33", "FR"),
        ("+34", "ES"),
        ("+36", "HU"),
        ("+39", "IT"),
        ("+40", "RO"),
        ("+41", "CH"),
        ("+43", "AT"),
        ("+44", "GB"),
        ("+45", "DK"),
        ("+46", "SE"),
        ("+47", "NO"),
        ("+48", "PL"),
        ("+49", "DE"),
        ("+51", "PE"),
        ("+52", "MX"),
        ("+54", "AR"),
        ("+55", "BR"),
        ("+56", "CL"),
        ("+57", "CO"),
        ("+60", "MY"),
        ("+61", "AU"),
        ("+62", "ID"),
        ("+63", "PH"),
        ("+64", "NZ"),
        ("+65", "SG"),
        ("+66", "TH"),
        ("+81", "JP"),
        ("+82", "KR"),
        ("+84", "VN"),
        ("+86", "CN"),
        ("+90", "TR"),
        ("+91", "IN"),
        ("+92", "PK"),
        ("+351", "PT"),
        ("+353", "IE"),
        ("+358", "FI"),
        ("+420", "CZ"),
        ("+972", "IL"),
        ("+971", "AE"),
        ("+966", "SA"),
    ];
    // Longest matching prefix wins (+351 before +3…).
    CODES
        .iter()
        .filter(|(code, _)| e164.starts_with(code))
        .max_by_key(|(code, _)| code.len())
        .map(|(_, c)| *c)
}

#[utoipa::path(post, path = "/v1/numbers", tag = "numbers", request_body = NumberCreate,
    responses((status = 201, body = NumberOut), (status = 400), (status = 401), (status = 404),
              (status = 409), (status = 422)))]
pub async fn create(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<NumberOut>), ApiError> {
    let req: NumberCreate = parse_body(&body)?;
    check_phone(&req.phone_number)?;
    let country = match req.country.as_deref() {
        Some(c) => Some(check_country(c)?),
        None => country_of(&req.phone_number).map(str::to_string),
    };
    let number =
        state.store().create_number(&req.phone_number, country.as_deref(), req.agent_id.as_deref()).await?;
    tracing::info!(number_id = %number.id, "number registered");
    Ok((StatusCode::CREATED, Json(number.into())))
}

#[utoipa::path(get, path = "/v1/numbers", tag = "numbers",
    params(("limit" = Option<i64>, Query, description = "1–100, default 20"),
           ("offset" = Option<i64>, Query, description = "≥ 0, default 0")),
    responses((status = 200, body = Page<NumberOut>), (status = 401), (status = 422)))]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Page<NumberOut>>, ApiError> {
    let page = Pagination::from_query(&query)?;
    let (numbers, total) = state.store().list_numbers(page.limit, page.offset).await?;
    Ok(Json(Page::new(numbers.into_iter().map(NumberOut::from).collect(), page.offset, total)))
}

#[utoipa::path(get, path = "/v1/numbers/{id}", tag = "numbers", params(("id" = String, Path)),
    responses((status = 200, body = NumberOut), (status = 401), (status = 404)))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<NumberOut>, ApiError> {
    Ok(Json(state.store().get_number(&id).await?.into()))
}

#[utoipa::path(patch, path = "/v1/numbers/{id}", tag = "numbers", params(("id" = String, Path)),
    request_body = NumberUpdate,
    responses((status = 200, body = NumberOut), (status = 400), (status = 401), (status = 404),
              (status = 409), (status = 422)))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<NumberOut>, ApiError> {
    let req: NumberUpdate = parse_body(&body)?;
    let phone_number = match req.phone_number {
        None => None,
        Some(None) => return Err(ApiError::Unprocessable("phoneNumber: may not be null".into())),
        Some(Some(p)) => {
            check_phone(&p)?;
            Some(p)
        }
    };
    let country = match req.country {
        Some(Some(c)) => Some(Some(check_country(&c)?)),
        other => other,
    };
    let patch = NumberPatch { phone_number, country, agent_id: req.agent_id };
    Ok(Json(state.store().update_number(&id, patch).await?.into()))
}

#[utoipa::path(delete, path = "/v1/numbers/{id}", tag = "numbers", params(("id" = String, Path)),
    responses((status = 200, body = Deleted), (status = 401), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    state.store().delete_number(&id).await?;
    tracing::info!(number_id = %id, "number deleted");
    Ok(Json(Deleted { id, deleted: true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_from_the_longest_calling_code() {
        assert_eq!(country_of("+14155550123"), Some("US"));
        assert_eq!(country_of("+351912345678"), Some("PT"));
        assert_eq!(country_of("+33612345678"), Some("FR"));
        assert_eq!(country_of("+999123456789"), None);
        assert_eq!(check_country("gb").unwrap(), "GB");
        assert!(check_country("GBR").is_err());
    }
}
